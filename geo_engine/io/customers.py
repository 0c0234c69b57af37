"""Read customer files in chunks and write scored ones, by file extension (SPEC 3.3 and 7).

CSV (pandas, ``chunksize``), Parquet and GeoParquet (pyarrow record batches), and every vector
format GDAL reads (GeoJSON, GeoPackage, ...: pyogrio, ``skip_features``/``max_features``), so
memory stays bounded whatever the input size.

It reads and writes rows; it never scores them (:mod:`geo_engine.scoring`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely

from ..errors import InvalidInput

__all__ = ["BackgroundWriter", "ChunkWriter", "count_rows", "prefetch", "read_chunks"]


def count_rows(path: Path) -> int | None:
    """How many rows the input has, when that is cheap to know (for the progress bar)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".csv":
        with path.open("rb") as f:
            return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1)
    try:
        return int(pyogrio.read_info(path)["features"])
    except Exception:  # noqa: BLE001 - only a progress hint
        return None


def read_chunks(path: Path, chunk_rows: int, delimiter: str = ",") -> Iterator[pd.DataFrame]:
    """Yield the input as DataFrames (GeoDataFrames when it has geometry) of chunk_rows rows
    (a CSV's columns split on ``delimiter``)."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # text columns: every chunk has the same types, and the input comes out as it went in
            yield from pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False,
                                   na_values=[""], sep=delimiter, encoding="utf-8-sig")
        elif suffix == ".parquet":
            # pre_buffer off: with it on, pyarrow keeps every column chunk read so far, so memory
            # grows with the file (benchmarks/RESULTS.md, bench_score); off, it stays flat
            pf = pq.ParquetFile(path, pre_buffer=False)
            geo = (pf.schema_arrow.metadata or {}).get(b"geo")
            geom_col = None
            if geo:
                import json

                geom_col = json.loads(geo).get("primary_column", "geometry")
            for batch in pf.iter_batches(batch_size=chunk_rows):
                df = batch.to_pandas()
                if geom_col and geom_col in df.columns:
                    df = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(shapely.from_wkb(df[geom_col]),
                                                                     crs="EPSG:4326"))
                    if geom_col != "geometry":
                        df = df.drop(columns=[geom_col])
                yield df
        else:
            # one pass as an Arrow stream: skipping features again per chunk would make GDAL
            # parse a GeoJSON file from its start every time (quadratic in its size)
            with pyogrio.open_arrow(path, batch_size=chunk_rows, use_pyarrow=True) as (meta, reader):
                geom_col = meta.get("geometry_name") or "wkb_geometry"
                crs = meta.get("crs")
                for batch in reader:
                    df = batch.to_pandas()
                    geoms = shapely.from_wkb(df.pop(geom_col)) if geom_col in df.columns else None
                    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, index=df.index, crs=crs)
                                           if geoms is not None else None)
                    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
                        gdf = gdf.to_crs("EPSG:4326")
                    yield gdf
    except (OSError, ValueError, pa.ArrowException, pyogrio.errors.DataSourceError) as exc:
        raise InvalidInput(f"{path}: cannot be read as a customer file: {exc}") from None


class ChunkWriter:
    """Write scored chunks to one output file, its format from the extension.

    Chunks go to a hidden file beside it, renamed over ``path`` by :meth:`close`: a run that
    fails leaves no half-written output and keeps whatever ``path`` held (call :meth:`abort`).
    """

    def __init__(self, path: Path):
        self.final = path
        self.suffix = path.suffix.lower()
        # the same extension: the GDAL drivers pick the format by it
        self.path = path.with_name(f".{path.stem}.partial{path.suffix}")
        self._parquet: pq.ParquetWriter | None = None
        self._first = True
        if self.suffix not in (".csv", ".parquet", ".geojson", ".gpkg", ".json"):
            raise InvalidInput(f"{path}: the output format is chosen by extension: use .csv, "
                               ".parquet, .geojson or .gpkg")
        self.path.unlink(missing_ok=True)

    def write(self, df: pd.DataFrame) -> None:
        if self.suffix == ".csv":
            frame = df.drop(columns=["geometry"]) if isinstance(df, gpd.GeoDataFrame) else df
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        elif self.suffix == ".parquet":
            frame = df.to_wkb() if isinstance(df, gpd.GeoDataFrame) else df
            table = pa.Table.from_pandas(pd.DataFrame(frame), preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        else:
            gdf = df if isinstance(df, gpd.GeoDataFrame) else gpd.GeoDataFrame(
                df, geometry=gpd.points_from_xy(df["located_lon"], df["located_lat"]), crs="EPSG:4326")
            # the layer (GeoPackage) or collection (GeoJSON) is named after the output, not after
            # the hidden file it is written to first
            pyogrio.write_dataframe(gdf, self.path, layer=self.final.stem, append=not self._first)
        self._first = False

    def close(self, commit: bool = True) -> None:
        """Finish the file and (with ``commit``) put it in place of the output; without, the
        finished file waits beside it for :meth:`commit` or :meth:`abort`."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if commit:
            self.commit()

    def commit(self) -> None:
        """Put the finished file in place of the output."""
        if not self._first:  # (no chunk at all: no file)
            os.replace(self.path, self.final)

    def abort(self) -> None:
        """Drop what was written; the output is left as it was (again: nothing more)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        self.path.unlink(missing_ok=True)


class BackgroundWriter:
    """A :class:`ChunkWriter` fed from a thread of its own, so writing a chunk (Parquet and
    GDAL release the GIL) overlaps scoring the next. At most ``depth`` chunks wait; an error
    in the thread is raised at the next ``write`` or at ``close``."""

    def __init__(self, writer: ChunkWriter, depth: int = 2):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chunk-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (df := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.writer.write(df)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, df: pd.DataFrame) -> None:
        self._raise()
        self._queue.put(df)

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self, commit: bool = True) -> None:
        """Finish the file and (with ``commit``) put it in place; if any write failed, drop it
        and raise."""
        self._finish()
        try:
            self._raise()
            self.writer.close(commit)
        except BaseException:
            self.writer.abort()
            raise

    def abort(self) -> None:
        self._finish()
        self.writer.abort()


def prefetch(items: Iterator, depth: int = 1) -> Iterator:
    """Yield what ``items`` yields, produced ``depth`` ahead in a thread of its own: the next
    chunk is read (pyarrow and GDAL release the GIL) while this one is scored. An error in
    the thread is raised where the item would have come."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    thread = threading.Thread(target=run, name="chunk-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
