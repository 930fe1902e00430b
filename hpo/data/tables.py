"""Reading a user's table as it was published: header-less files, banner lines, "?" for missing, gzip, Parquet.

A :class:`Table` keeps the file it came from so that every later error can name the line a text editor shows
(1-based, the header and skipped lines counted); the line numbers are worked out only when an error needs one,
so a large file is read once, by pandas' C parser. Columns the declaration calls categorical (and label
columns matched by value) are read as pandas categoricals, which hold each distinct string once: a 10-million-row
file then costs its codes, not 10 million Python strings.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from hpo.errors import DataError

__all__ = ["PARQUET_SUFFIXES", "ReadOptions", "Table", "read_table"]

PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING = "<missing>"
CHUNK_ROWS = 200_000  # the parser's unit: bounds its working memory to one chunk beyond the table itself


@dataclass(frozen=True)
class ReadOptions:
    """How to read every file of one dataset (from the dataset YAML)."""

    columns: tuple[str, ...] | None = None  # names for header-less files
    comment: str | None = None  # lines starting with it are skipped
    na_values: tuple[str, ...] = ()  # extra strings that mean "missing"
    usecols: tuple[str, ...] | None = None  # keep only these (None: all)
    numeric: tuple[str, ...] | None = None  # with it, every other column is read as a pandas categorical
    header: bool | None = (
        None  # does line 1 name the columns? None: no when `columns` is given, else yes (checked)
    )

    @property
    def has_header(self) -> bool:
        return self.header if self.header is not None else self.columns is None


@dataclass
class Table:
    """One file's rows; ``frame.index`` is each row's 0-based position among the file's data rows."""

    path: Path
    frame: pd.DataFrame
    options: ReadOptions
    header: tuple[str, ...]  # every column the file has (``frame`` holds only those read)
    _lines: np.ndarray | None = field(default=None, repr=False)

    @property
    def text(self) -> bool:
        return self.path.suffix.lower() not in PARQUET_SUFFIXES

    def line(self, row: int) -> int:
        """The file line (1-based, as an editor numbers it) of data row ``row``."""
        if self._lines is None:
            self._lines = _data_lines(self.path, self.options)
        return int(self._lines[row]) if row < len(self._lines) else row + 1

    def where(self, row: int) -> str:
        """``line N`` for a text file, ``row N`` (1-based) for a Parquet file."""
        return f"line {self.line(row)}" if self.text else f"row {row + 1}"

    def banner_hint(self) -> str:
        """ "; its line 1 reads '...': if that is a banner ..." for messages about unexpected columns."""
        if not self.text or self.options.columns is not None or len(self.header) > 1:
            return ""
        return _banner_hint(self.path)


def _banner_hint(path: Path) -> str:
    with _open_text(path) as f:
        first = f.readline().rstrip("\r\n")
    return (
        f"; its line 1 reads {first[:60]!r}: if that is a banner, not the header, declare `comment:` with its "
        "first character"
    )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _raw_lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as f:
        yield from enumerate(f, start=1)


def _skipped(text: str, comment: str | None) -> bool:
    return not text.strip() or (comment is not None and text.startswith(comment))


def _data_lines(path: Path, options: ReadOptions) -> np.ndarray:
    """File line numbers of the data rows: not blank, not a comment, not the header."""
    lines = [n for n, text in _raw_lines(path) if not _skipped(text, options.comment)]
    if options.has_header:
        lines = lines[1:]
    return np.asarray(lines, dtype=np.int64)


def _comment_lines(path: Path, comment: str) -> list[int]:
    """0-based indices of the lines starting with ``comment`` (pandas' ``skiprows``)."""
    return [n - 1 for n, text in _raw_lines(path) if text.startswith(comment)]


def _first_fields(path: Path, comment: str | None) -> list[str]:
    for _, text in _raw_lines(path):
        if not _skipped(text, comment):
            return [f.strip() for f in next(csv.reader([text]))]
    return []


def read_table(path: Path, options: ReadOptions) -> Table:
    """Read ``path`` (CSV, optionally gzip-compressed, or Parquet); every problem is one :class:`DataError` line."""
    if not path.is_file():
        raise DataError(f"{path.resolve()}: file not found")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame, header = _read_parquet(path, options)
    else:
        if options.columns is not None:
            header = list(options.columns)
        elif options.header:  # declared: the first line names the columns, numbers or not
            header = _first_fields(path, options.comment)
        else:
            header = _check_header_line(path, options)
        frame = _read_csv(path, options, header)
    table = Table(path, frame.reset_index(drop=True), options, tuple(header))
    _check_header(table)
    return table


def _read_parquet(path: Path, options: ReadOptions) -> tuple[pd.DataFrame, list[str]]:
    for key in ("columns", "comment"):
        if getattr(options, key) is not None:
            raise DataError(f"{path}: `{key}` applies to text files; a Parquet file names its own columns")
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        usecols = [c for c in options.usecols if c in names] if options.usecols is not None else None
        categorical = [
            c for c in (usecols or names) if options.numeric is not None and c not in options.numeric
        ]
        arrow = pq.read_table(path, columns=usecols, read_dictionary=categorical)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as Parquet ({' '.join(str(exc).split())})") from None
    frame = arrow.to_pandas()
    if options.na_values:
        for c in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[c]):
                frame[c] = frame[c].replace(list(options.na_values), np.nan)
    return frame, names


def _read_csv(path: Path, options: ReadOptions, header: list[str]) -> pd.DataFrame:
    """Every column is parsed (so a row with an extra field is an error, not a silent shift), the columns not
    kept are dropped at once, and every non-numeric column is a categorical."""
    if options.columns is not None and not options.has_header:
        _check_field_count(path, options)
    skiprows = _comment_lines(path, options.comment) if options.comment else None
    dtype = (
        {c: "category" for c in header if c not in options.numeric} if options.numeric is not None else None
    )
    keep = set(options.usecols) if options.usecols is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                path,
                header=0 if options.has_header else None,  # with `columns` too: line 1 is replaced by them
                names=list(options.columns) if options.columns is not None else None,
                index_col=False,
                skiprows=skiprows,
                dtype=dtype or None,
                na_values=list(options.na_values) or None,
                skipinitialspace=True,
                engine="c",
                chunksize=CHUNK_ROWS,
            )
            with reader:
                chunks = [c if keep is None else c[[n for n in c.columns if n in keep]] for c in reader]
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: {_parser_detail(exc)}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserWarning:
        raise DataError(
            f"{path}: the header has {len(header)} fields but the data rows have more"
            + (_banner_hint(path) if len(header) == 1 else "")
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a table ({' '.join(str(exc).split())})") from None
    return _combine(chunks)


def _combine(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame from the parser's chunks, a column at a time (categoricals merged with their categories), so
    that the whole table is never held twice."""
    if len(chunks) == 1:
        return chunks[0]
    columns = {}
    for name in list(chunks[0].columns):
        pieces = [chunk.pop(name) for chunk in chunks]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in pieces):
            columns[name] = pd.Series(union_categoricals(pieces), name=name)
        else:
            columns[name] = pd.concat(pieces, ignore_index=True)
        del pieces
    return pd.DataFrame(columns, copy=False)


def _parser_detail(exc: Exception) -> str:
    """pandas' "Expected 3 fields in line 5, saw 4" (file lines, as an editor shows them) in our words."""
    text = " ".join(str(exc).split())
    marker = "Expected "
    if marker in text:
        expected, _, rest = text.split(marker, 1)[1].partition(" fields in line ")
        line, _, saw = rest.partition(", saw ")
        return f"line {line} has {saw.rstrip('.')} fields where the first row has {expected}"
    return f"rows do not all have the same number of columns ({text})"


def _check_field_count(path: Path, options: ReadOptions) -> None:
    assert options.columns is not None
    fields = _first_fields(path, options.comment)
    if fields and len(fields) != len(options.columns):
        raise DataError(
            f"{path}: the first data row has {len(fields)} fields but `columns` names {len(options.columns)}"
            + (_banner_hint(path) if len(fields) == 1 else "")
        )


def _numeric(name: object) -> bool:
    try:
        float(str(name))
    except ValueError:
        return False
    return True


def _check_header_line(path: Path, options: ReadOptions) -> list[str]:
    """The header's names; a header-less file read as if it had a header would lose its first row to column
    names, so a first line that is half numbers or more is refused."""
    names = _first_fields(path, options.comment)
    if names and sum(_numeric(c) for c in names) * 2 >= len(names):
        raise DataError(
            f"{path}: line 1 looks like data, not a header ({', '.join(names[:4])}, ...); "
            "name the columns with `columns:` in the dataset YAML, or declare `header: true` if line 1 is a "
            "header of numeric names"
        )
    return names


def _check_header(table: Table) -> None:
    """A header row read as data (``columns`` given for a file that has one) is refused."""
    columns = [str(c) for c in table.frame.columns]
    if (
        table.options.columns is None
        or table.options.header is not None
        or not table.text
        or not len(table.frame)
    ):
        return  # nothing guessed: `header:` said what line 1 is
    if [str(v).strip() for v in table.frame.iloc[0].tolist()] == columns:
        raise DataError(
            f"{table.path}: {table.where(0)} repeats the names given in `columns`: the file has a header row; "
            "remove `columns`, or declare `header: true` to rename its columns"
        )


def same_columns(tables: Sequence[Table]) -> None:
    """Every file of a dataset has the training file's columns, or one line says which differ and why."""
    first = tables[0]
    expected = list(first.frame.columns)
    for other in tables[1:]:
        got = list(other.frame.columns)
        if got == expected:
            continue
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        detail = (
            f"lacks {missing}" if missing else f"has extra {extra}" if extra else "orders them differently"
        )
        raise DataError(
            f"{other.path}: columns differ from the training file {first.path.name}: {detail}"
            f"{other.banner_hint()}"
        )
