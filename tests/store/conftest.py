"""A Spark store URL for the whole test session (one JVM: Spark takes seconds to start)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

#: Small data on a 2-core machine: two partitions, and no adaptive execution (re-planning
#: after every stage costs more than it saves on a few thousand rows: ~40% of the time).
SPARK_OPTIONS = (
    "master=local[2]&spark.sql.shuffle.partitions=2&spark.ui.enabled=false"
    "&spark.sql.adaptive.enabled=false"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: needs Java and pyspark (a local Spark session)")


@pytest.fixture(scope="session")
def spark_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``pyspark://`` URL of a warehouse folder; the session stops after the tests."""
    if shutil.which("java") is None:
        pytest.skip("Spark tests need Java 17+ on PATH (pyspark runs Spark in a JVM)")
    pyspark = pytest.importorskip("pyspark", reason="Spark tests need pyspark installed")
    folder = tmp_path_factory.mktemp("spark") / "warehouse"
    yield f"pyspark://{folder}?{SPARK_OPTIONS}"
    session = pyspark.sql.SparkSession.getActiveSession()
    if session is not None:
        session.stop()
