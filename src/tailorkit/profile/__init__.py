"""Profiles: features declared in ``segments.yaml``, computed online and in batch alike.

* :mod:`tailorkit.profile.definitions` parses feature definitions;
* :mod:`tailorkit.profile.windows` is the shared time rule (minute buckets);
* :mod:`tailorkit.profile.online` updates a profile per event (amortized O(1));
* :mod:`tailorkit.profile.batch` compiles the same definitions to Ibis;
* :mod:`tailorkit.profile.sqlconditions` translates conditions to SQL.

See ``docs/profiles.md``.
"""

from tailorkit.profile.batch import profile_table
from tailorkit.profile.definitions import FeatureSet, parse_features
from tailorkit.profile.online import Profile, ProfilePlan

__all__ = ["FeatureSet", "Profile", "ProfilePlan", "parse_features", "profile_table"]
