"""Reading a CSV file as a stream of rows: encoding and delimiter detection, and a cap on line length.

The file is never read whole: one pass over its bytes (in chunks) settles the encoding and counts the lines for
the progress bar, then a second pass decodes and parses it row by row.
"""

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 20
# A physical line longer than this is refused (reported on its row) rather than read into memory.
MAX_LINE_CHARS = 1 << 20
DELIMITERS = ",;\t|"
TOO_LONG = "\x00line-too-long\x00"
# A field may be as long as a line (the csv module's default limit is 128 KiB); raising it is harmless elsewhere.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_CHARS))

# Bytes that Windows-1252 leaves undefined: a file containing them is ISO-8859-1 (Latin-1) proper.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


class FileProblem(Exception):
    """The file as a whole cannot be imported (not text, empty, no header); nothing was written."""


@dataclass(frozen=True)
class FileShape:
    encoding: str
    delimiter: str
    line_count: int


def inspect(stream: BinaryIO, *, encoding: str | None = None) -> FileShape:
    """Settle the encoding (UTF-8, UTF-8 with BOM, Windows-1252/Latin-1) and the delimiter; count the lines.

    Reads the file once in chunks. A file with NUL bytes (UTF-16, a spreadsheet, an image) is refused. An explicitly
    named `encoding` that does not decode the file is refused with the line of the first bad byte.
    """
    stream.seek(0)
    head = stream.read(CHUNK)
    if not head.strip():
        raise FileProblem("The file is empty.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        raise FileProblem("The file is not a text CSV (UTF-16 or binary?). Save it as CSV in UTF-8 and try again.")
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok, cp1252_ok = True, True
    line_count, line_of_first_bad_byte = 0, None
    chunk = head
    while chunk:
        if b"\x00" in chunk:
            raise FileProblem("The file contains NUL bytes: it is not a text CSV.")
        if utf8_ok:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as error:
                utf8_ok = False
                line_of_first_bad_byte = line_count + chunk[: error.start].count(b"\n") + 1
        if cp1252_ok and not _CP1252_UNDEFINED.isdisjoint(chunk):
            cp1252_ok = False
        line_count += chunk.count(b"\n")
        chunk = stream.read(CHUNK)
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if not head.endswith(b"\n"):
        line_count += 1

    if encoding:
        problem = encoding_problem(encoding)
        if problem:
            raise FileProblem(problem)
        if codecs.lookup(encoding).name == "utf-8" and not utf8_ok:
            raise FileProblem(f"The file is not valid UTF-8 (first bad byte on line {line_of_first_bad_byte}).")
    elif utf8_ok:
        encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    else:
        encoding = "cp1252" if cp1252_ok else "latin-1"
    return FileShape(encoding=encoding, delimiter=_delimiter(head, encoding), line_count=line_count)


def encoding_problem(encoding: str) -> str | None:
    """Why a named encoding cannot read a CSV file, or None. Lines and delimiters are found in the bytes, so the
    encoding must write them as ASCII does (UTF-8, Windows-1252, Latin-1 ... but not UTF-16, EBCDIC or rot13)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        return f"Unknown encoding “{encoding}”."
    try:
        sample = b',;\t|\r\n"abc'
        ascii_compatible = info._is_text_encoding and sample.decode(info.name, errors="replace") == sample.decode()
    except (UnicodeError, LookupError):
        ascii_compatible = False
    if not ascii_compatible:
        return f"The encoding “{encoding}” cannot be read as CSV: use UTF-8, Windows-1252 or Latin-1."
    return None


def _delimiter(head: bytes, encoding: str) -> str:
    text = head.decode(encoding, errors="replace")
    lines = text.splitlines()[:20]
    if len(text) == CHUNK and len(lines) > 1:
        lines = lines[:-1]  # the last line of the chunk may be cut short
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        # One column, or too little to tell: the delimiter the header line uses most, else a comma.
        header = lines[0] if lines else ""
        counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] else ","


def _capped_lines(text: io.TextIOBase) -> Iterator[str]:
    """The file's lines, with each line longer than MAX_LINE_CHARS replaced by a TOO_LONG marker line."""
    while True:
        line = text.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while True:  # skip the rest of the line without holding it
                rest = text.readline(CHUNK)
                if not rest or rest.endswith("\n"):
                    break
            yield TOO_LONG + "\n"
            continue
        yield line


def rows(stream: BinaryIO, shape: FileShape) -> Iterator[tuple[int, list[str] | None]]:
    """(row number, cells) for each record; the header is row 1. Cells is None for a line that was too long.

    Blank lines are skipped (but counted, so that row numbers match what a spreadsheet shows).
    """
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding=shape.encoding, newline="")
    reader = csv.reader(_capped_lines(text), delimiter=shape.delimiter)
    row_number = 0
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                # Only a named encoding can fail here: a detected one was checked against the whole file.
                raise FileProblem(
                    f"The file is not valid {shape.encoding} (a bad byte after row {row_number}): "
                    "choose its encoding, or save it as UTF-8."
                ) from None
            except csv.Error:
                row_number += 1
                yield row_number, None
                continue
            row_number += 1
            if cells == [TOO_LONG]:
                yield row_number, None
            elif any(cell.strip() for cell in cells):
                yield row_number, cells
    finally:
        text.detach()
