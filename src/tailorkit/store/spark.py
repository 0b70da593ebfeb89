"""Spark as a warehouse: a Spark session reached through Ibis's PySpark backend.

A store URL ``pyspark:///abs/warehouse/dir`` opens (or reuses) this process's
Spark session, local by default; the query string sets the master and any
``spark.*`` option::

    pyspark:///srv/shop/spark-warehouse?master=local[4]&spark.driver.memory=4g
    pyspark:///srv/wh?master=spark://head:7077&spark.sql.warehouse.dir=s3a://bucket/wh

Every table is a Parquet folder ``<warehouse dir>/<table>``. Spark's default
(in-memory) catalog forgets tables when the process ends, the folders stay:
connecting declares each folder as a table again.

:class:`SparkBackend` is Ibis 12's PySpark backend with the few changes that
make the same Ibis expressions give the same answers as on DuckDB and
PostgreSQL (the one Spark shim; query code has no Spark branches):

* **JSON.** ``json_col["key"]`` compiled to ``get_json_object``, which
  returns a JSON string *without* its quotes (``"10"`` and ``10`` look
  alike), and ``.str``/``.int``/``.float``/``.bool`` ran pandas UDFs that
  fail on such text. Here ``json_col["key"]`` is the JSON text of the value
  (Spark's ``VARIANT``), as on DuckDB (``json_extract``) and PostgreSQL
  (``->``), and the unwrapping types that text with SQL.
* **Float literals.** Spark reads ``1.0`` as ``DECIMAL(2,1)``, so
  ``ifelse(hit, 1.0, 0.0).sum()`` was a decimal; float literals are cast
  to ``DOUBLE``.
* **Time zones.** A Spark ``TIMESTAMP`` is an instant shown in the session
  time zone, which Ibis pins to UTC; it is typed ``timestamp('UTC')`` here
  (Ibis says zone-less), so results are UTC-aware as on the other backends.
* **Tables.** In-memory tables go to Spark and results come back as Arrow
  (Ibis' pandas path stores NULL strings as ``"NaN"``); ``create_table`` writes Parquet
  folders (above), also when the query reads the table it replaces
  (Spark refuses that); ``temp=True`` is a cached temporary view (Ibis
  refuses).
* **Deletes.** Spark has no ``DELETE`` for Parquet tables; erasure and
  retention rewrite the table without the deleted rows.
* **Lifetime.** ``disconnect`` leaves the session running: there is one per
  process, it is slow to start and every warehouse of the process shares it.

>>> parse_spark_url("pyspark:///tmp/wh?master=local[2]&spark.sql.shuffle.partitions=4")
SparkOptions(master='local[2]', conf={'spark.sql.warehouse.dir': '/tmp/wh', \
'spark.sql.shuffle.partitions': '4'})
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import sqlglot as sg
import sqlglot.expressions as sge
from ibis.backends.pyspark import Backend as PySparkBackend
from ibis.backends.pyspark.datatypes import PySparkSchema
from ibis.backends.sql.compilers.base import NULL
from ibis.backends.sql.compilers.pyspark import PySparkCompiler
from ibis.formats.pyarrow import PyArrowData

SCHEME = "pyspark://"
#: Defaults for a local master: no web UI or progress bars, few shuffle partitions.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
}
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9_$@ -]+$")
_NUMBER = r"^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]+)?$"
_INTEGER = r"^-?(0|[1-9][0-9]*)$"


@dataclass(frozen=True)
class SparkOptions:
    """Where the session runs (``master``) and its configuration."""

    master: str = "local[*]"
    conf: dict[str, str] = field(default_factory=dict)


def parse_spark_url(url: str) -> SparkOptions:
    """Master and configuration from a ``pyspark://`` URL (see the module doc).

    ``<project>`` in ``tailorkit.yaml`` expands to an absolute path, hence four slashes:

    >>> parse_spark_url("pyspark:////srv/shop/spark-warehouse").conf
    {'spark.sql.warehouse.dir': '/srv/shop/spark-warehouse'}
    >>> parse_spark_url("pyspark:///srv/wh?threads=4")
    Traceback (most recent call last):
    ...
    ValueError: store URL: unknown option 'threads' (use master= or spark.*=)
    """
    if not url.startswith(SCHEME):
        raise ValueError(f"not a Spark store URL: {url!r}")
    parts = urlsplit(url)
    conf: dict[str, str] = {}
    path = parts.netloc + parts.path
    if path.strip("/"):
        conf["spark.sql.warehouse.dir"] = "/" + path.lstrip("/")
    master = "local[*]"
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "master":
            master = value
        elif key.startswith("spark."):
            conf[key] = value
        else:
            raise ValueError(f"store URL: unknown option {key!r} (use master= or spark.*=)")
    if "spark.sql.warehouse.dir" not in conf:
        raise ValueError("store URL: name the warehouse directory, e.g. pyspark:///abs/dir")
    return SparkOptions(master, conf)


def connect(url: str) -> SparkBackend:
    """:class:`SparkBackend` on this process's Spark session (started if needed).

    A second URL in the same process gets the running session (Spark's
    ``getOrCreate``: options that need a new session are ignored).
    """
    from pyspark.sql import SparkSession

    options = parse_spark_url(url)
    conf = dict(LOCAL_DEFAULTS) if options.master.startswith("local") else {}
    conf.update(options.conf)
    builder = SparkSession.builder.master(options.master).appName("tailorkit")
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
    # WARN-level stack traces for expected conditions (a table folder not written yet)
    session.sparkContext.setLogLevel(conf.get("spark.log.level", "ERROR"))
    _type_timestamps_as_utc()
    _ = ibis.pyspark  # registers Ibis' pyspark options (its compiler reads them)
    backend: SparkBackend = SparkBackend().connect(session)
    backend.attach_folders()
    return backend


@functools.cache
def _type_timestamps_as_utc() -> None:
    import pyspark.sql.types as pt
    from ibis.backends.pyspark import datatypes

    datatypes._from_pyspark_dtypes[pt.TimestampType] = functools.partial(
        dt.Timestamp, timezone="UTC"
    )


def _json_path(index: ops.Value) -> str | None:
    if isinstance(index, ops.Literal):
        if isinstance(index.value, int):
            return f"$[{index.value}]"
        if isinstance(index.value, str) and _KEY.match(index.value):
            return f"$['{index.value}']"
    return None


_UNWRAPS = (ops.UnwrapJSONString, ops.UnwrapJSONInt64, ops.UnwrapJSONFloat64, ops.UnwrapJSONBoolean)


class JsonTextCompiler(PySparkCompiler):
    """Ibis' PySpark compiler with JSON as text (see the module doc)."""

    __slots__ = ()
    # inherited SIMPLE_OPS would re-create the UDF calls over the methods below
    SIMPLE_OPS: ClassVar[dict[type, str]] = {
        k: v for k, v in PySparkCompiler.SIMPLE_OPS.items() if k not in _UNWRAPS
    }

    def visit_NonNullLiteral(self, op: Any, *, value: Any, dtype: dt.DataType) -> Any:
        result = super().visit_NonNullLiteral(op, value=value, dtype=dtype)
        # Spark reads 1.0 as DECIMAL(2,1): sums of it would be decimals, not doubles
        if dtype.is_floating() and not isinstance(result, sge.Cast):
            return self.cast(result, dtype)
        return result

    def visit_JSONGetItem(self, op: Any, *, arg: Any, index: Any) -> Any:
        path = _json_path(op.index)
        if path is None:
            return super().visit_JSONGetItem(op, arg=arg, index=index)
        variant = self.f.try_variant_get(self.f.try_parse_json(arg), sge.convert(path))
        return self.f.to_json(variant)

    def visit_UnwrapJSONString(self, op: Any, *, arg: Any) -> Any:
        text = self.f.variant_get(
            self.f.try_parse_json(arg), sge.convert("$"), sge.convert("string")
        )
        return self.if_(self.f.startswith(arg, sge.convert('"')), text, NULL)

    def visit_UnwrapJSONFloat64(self, op: Any, *, arg: Any) -> Any:
        return self.if_(self.f.rlike(arg, sge.convert(_NUMBER)), self.cast(arg, dt.float64), NULL)

    def visit_UnwrapJSONInt64(self, op: Any, *, arg: Any) -> Any:
        return self.if_(self.f.rlike(arg, sge.convert(_INTEGER)), self.cast(arg, dt.int64), NULL)

    def visit_UnwrapJSONBoolean(self, op: Any, *, arg: Any) -> Any:
        true, false = sge.convert("true"), sge.convert("false")
        return self.if_(arg.eq(true), sge.true(), self.if_(arg.eq(false), sge.false(), NULL))


class SparkBackend(PySparkBackend):
    """Ibis' PySpark backend, answering like DuckDB and PostgreSQL (see the module doc)."""

    compiler = JsonTextCompiler()

    @property
    def warehouse_dir(self) -> str:
        """Where the table folders are."""
        return str(self._session.conf.get("spark.sql.warehouse.dir")).rstrip("/")

    def disconnect(self) -> None:
        """Keep the session: it belongs to the process (stop it with ``SparkSession.stop``)."""

    def _fs(self) -> tuple[Any, Any]:
        """Hadoop's file system of the warehouse directory (local, HDFS, S3, ...) and its path."""
        root = self._session._jvm.org.apache.hadoop.fs.Path(self.warehouse_dir)
        return root.getFileSystem(self._session._jsc.hadoopConfiguration()), root

    def attach_folders(self) -> list[str]:
        """Declare the table folders of the warehouse directory that the catalog lacks."""
        fs, root = self._fs()
        if not fs.exists(root):
            return []
        known = set(self.list_tables())
        attached = []
        for status in fs.listStatus(root):
            name = status.getPath().getName()
            if not status.isDirectory() or not TABLE_NAME.match(name) or name in known:
                continue
            files = [f.getPath().getName() for f in fs.listStatus(status.getPath())]
            if any(f.endswith(".parquet") for f in files):  # an empty folder has no schema
                path = sge.convert(f"{self.warehouse_dir}/{name}").sql(self.dialect)
                self.raw_sql(f"CREATE TABLE `{name}` USING parquet LOCATION {path}")
                attached.append(name)
        return attached

    def raw_sql(self, query: str | sge.Expression, **kwargs: Any) -> Any:
        """Run SQL; a ``DELETE`` (erasure, retention) rewrites the table without the rows.

        Parquet tables have no ``DELETE`` in Spark (Delta Lake and Iceberg
        do): the rows where the condition is not true are kept and written
        back over the table.
        """
        statement = query
        if isinstance(query, str) and query.lstrip()[:6].upper() == "DELETE":
            statement = sg.parse_one(query, dialect=self.dialect)
        if not isinstance(statement, sge.Delete):
            return super().raw_sql(query, **kwargs)
        name = statement.this.name
        where = sge.Coalesce(this=statement.args["where"].this, expressions=[sge.false()])
        keep = sge.select("*").from_(statement.this).where(sge.not_(where))
        frame = self._session.sql(keep.sql(self.dialect)).localCheckpoint(eager=True)
        frame.write.insertInto(name, overwrite=True)
        return None

    def to_pyarrow(
        self,
        expr: ir.Expr,
        /,
        *,
        params: Mapping[ir.Scalar, Any] | None = None,
        limit: int | str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Results as Arrow straight from Spark (Ibis goes through pandas)."""
        self._run_pre_execute_hooks(expr)
        table_expr = expr.as_table()
        sql = self.compile(table_expr, params=params, limit=limit, **kwargs)
        arrow = self._session.sql(sql).toArrow()
        return expr.__pyarrow_result__(PyArrowData.convert_table(arrow, table_expr.schema()))

    def _register_in_memory_table(self, op: Any) -> None:
        frame = self._session.createDataFrame(op.data.to_pyarrow(op.schema))
        frame.createOrReplaceTempView(op.name)

    def create_table(
        self,
        name: str,
        /,
        obj: Any = None,
        *,
        schema: Any = None,
        database: str | None = None,
        temp: bool | None = None,
        overwrite: bool = False,
        format: str = "parquet",
        partition_by: str | list[str] | None = None,
    ) -> ir.Table:
        """A Parquet folder in the warehouse directory; ``temp``: a cached view."""
        if database is not None or format != "parquet":
            raise NotImplementedError("tables are Parquet folders in the warehouse directory")
        table = None
        if obj is not None:
            table = obj if isinstance(obj, ir.Table) else ibis.memtable(obj)
            self._run_pre_execute_hooks(table)
        if temp:
            if table is None:
                raise ValueError("a temporary table needs its rows")
            return self._create_cached_table(name, table)
        path = f"{self.warehouse_dir}/{name}"
        if table is None:
            if overwrite:
                self.drop_table(name, force=True)
            spark_schema = PySparkSchema.from_ibis(ibis.schema(schema))
            self._session.catalog.createTable(
                name, path=path, source="parquet", schema=spark_schema
            )
        else:
            frame = self._session.sql(self.compile(table))
            if overwrite and name in {t.name for t in table.op().find(ops.DatabaseTable)}:
                # Spark refuses to overwrite a table its query reads; DuckDB and
                # PostgreSQL do it. Compute the rows first, then replace the table.
                frame = frame.localCheckpoint(eager=True)
            mode = "overwrite" if overwrite else "error"
            frame.write.saveAsTable(
                name, format="parquet", mode=mode, partitionBy=partition_by, path=path
            )
        return self.table(name)

    def drop_table(
        self, name: str, /, *, database: tuple[str, str] | str | None = None, force: bool = False
    ) -> None:
        """Drop a table and its folder, or a temporary table."""
        if name in self._cached_dataframes:
            self._drop_cached_table(name)
            return
        super().drop_table(name, database=database, force=force)
        if database is None and TABLE_NAME.match(name):
            fs, root = self._fs()
            fs.delete(self._session._jvm.org.apache.hadoop.fs.Path(root, name), True)
