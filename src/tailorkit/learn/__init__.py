"""tailorkit.learn — model training from the warehouse: artifacts, metrics, scores.

* :mod:`tailorkit.learn.data` — training data (Ibis in the warehouse, small frames out);
* :mod:`tailorkit.learn.propensity` — propensity to buy and churn (LightGBM, logistic baseline);
* :mod:`tailorkit.learn.recommend` / :mod:`tailorkit.learn.recommender` — recommendation
  models, offline evaluation and the served :class:`~tailorkit.learn.recommender.Recommender`;
* :mod:`tailorkit.learn.artifacts` — versioned models in ``<project>/models``;
* :mod:`tailorkit.learn.scores` — ``profile_scores`` for profiles and targeting;
* :mod:`tailorkit.learn.build` — ``tailorkit build``.

Clusters, personas and journeys are segment-stage code:
:mod:`tailorkit.segment.clusters`, :mod:`tailorkit.segment.journeys`. See ``docs/learn.md``.
"""
