"""PDF and Word files: text per page with "p. N" citations, paragraphs and titles, and a clear reason for each bad
file. Fixtures are made here: PDFs written byte by byte, .docx files with python-docx itself."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import bot.core.service
from bot.cli import cli
from bot.core.ingest import IngestFailure, ingest_paths
from bot.store import SQLiteStore
from tests.fakes.reader import FakeReader


def pdf_bytes(pages: list[list[str]], *, title: str | None = None) -> bytes:
    """A minimal PDF whose pages show these lines in Helvetica (a real text layer, as pypdf reads it)."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    info = f"/Title ({title})" if title else ""
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        text = " ".join(f"({line}) Tj 0 -20 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(f"<< {info} >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        len(objects),
        xref,
    )
    return bytes(out)


REPORT_PAGES = [
    ["Harbor ferry annual report", "The ferry carried 90000 riders in 2023."],
    ["The club was founded by Noor Haddad in 2015.", "It meets on Monday."],
]


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "qa.db")
    yield store
    store.close()


def test_pdf_sentences_keep_their_page_and_passages_stay_on_one_page(store, tmp_path):
    path = tmp_path / "report.PDF"
    path.write_bytes(pdf_bytes(REPORT_PAGES, title="Ferry report 2023"))
    report = ingest_paths(store, [path])
    assert (report.added, report.failures) == (1, [])
    assert list(store.db.query("select title, body from articles")) == [
        {
            "title": "Ferry report 2023",
            "body": "Harbor ferry annual report\nThe ferry carried 90000 riders in 2023.\n\n"
            "The club was founded by Noor Haddad in 2015.\nIt meets on Monday.",
        }
    ]
    sentences = [(row["text"], row["page"]) for row in store.db.query("select text, page from sentences order by idx")]
    assert sentences == [
        ("Harbor ferry annual report\nThe ferry carried 90000 riders in 2023.", 1),
        ("The club was founded by Noor Haddad in 2015.", 2),
        ("It meets on Monday.", 2),
    ]
    passages = [row["text"] for row in store.db.query("select text from passages order by idx")]
    assert passages == [
        "Harbor ferry annual report\nThe ferry carried 90000 riders in 2023.",
        "The club was founded by Noor Haddad in 2015.\nIt meets on Monday.",
    ]


def test_ask_cites_the_page_of_a_pdf(tmp_path, monkeypatch, tiny_reader_dir):
    (tmp_path / "report.pdf").write_bytes(pdf_bytes(REPORT_PAGES, title="Ferry report 2023"))
    monkeypatch.setenv("QABOT_READER_MODEL", str(tiny_reader_dir))
    monkeypatch.setattr(
        bot.core.service, "build_reader", lambda settings: FakeReader(settings.reader_config(), point_at="haddad")
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", "qa.db", "ingest", "report.pdf"]).exit_code == 0
    question = "Who founded the club?"
    data = json.loads(runner.invoke(cli, ["--db", "qa.db", "ask", "--json", question]).stdout)
    assert (data["answer"], data["sentence"], data["page"]) == (
        "Haddad",
        "The club was founded by Noor Haddad in 2015.",
        2,
    )
    text = runner.invoke(cli, ["--db", "qa.db", "ask", question]).stdout
    assert text.splitlines()[2] == "  — Ferry report 2023 (report.pdf, p. 2)"


def docx_file(path: Path, *, title: str | None, paragraphs: list[tuple[str, str]]) -> Path:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    for style, text in paragraphs:
        if style.startswith("Heading"):
            document.add_heading(text, level=int(style.split()[-1]))
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


def test_docx_paragraphs_and_headings_with_the_title_property(store, tmp_path):
    path = docx_file(
        tmp_path / "memo.docx",
        title="Office move memo",
        paragraphs=[("Heading 1", "Riverside campus"), ("", "The office moves on 3 March."), ("", "Bring badges.")],
    )
    assert ingest_paths(store, [path]).added == 1
    assert list(store.db.query("select title, body, source from articles")) == [
        {
            "title": "Office move memo",
            "body": "Riverside campus\n\nThe office moves on 3 March.\n\nBring badges.",
            "source": str(path),
        }
    ]


def test_docx_without_a_title_property_takes_its_first_heading(store, tmp_path):
    path = docx_file(
        tmp_path / "memo.docx",
        title=None,
        paragraphs=[("", "Draft"), ("Heading 1", "Riverside campus opens"), ("", "The office moves on 3 March.")],
    )
    ingest_paths(store, [path])
    assert list(store.db.query("select title, body from articles")) == [
        {"title": "Riverside campus opens", "body": "Draft\n\nThe office moves on 3 March."}
    ]


def encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = path.with_name("plain.pdf")
    plain.write_bytes(pdf_bytes(REPORT_PAGES))
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt("secret")
    with path.open("wb") as out:
        writer.write(out)
    plain.unlink()
    return path


def scanned_pdf(path: Path) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    with path.open("wb") as out:
        writer.write(out)
    return path


def zip_of_something_else(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photo.txt", "not a word document")
    return path


@pytest.mark.parametrize(
    "make, name, reason",
    [
        (scanned_pdf, "scan.pdf", "no text layer: OCR is not supported"),
        (encrypted_pdf, "locked.pdf", "encrypted PDF: save an unprotected copy (e.g. qpdf --decrypt) and ingest that"),
        (zip_of_something_else, "fake.docx", "not a Word document (.docx): "),
        (lambda p: p.write_bytes(b"plain text, not a zip") and p, "notes.docx", "not a Word document (.docx): "),
    ],
    ids=["scanned", "encrypted", "zip-of-other", "not-zip"],
)
def test_bad_documents_are_reported_and_the_rest_goes_in(store, tmp_path, make, name, reason):
    bad = make(tmp_path / name)
    good = tmp_path / "good.pdf"
    good.write_bytes(pdf_bytes(REPORT_PAGES))
    report = ingest_paths(store, [bad, good])
    assert report.added == 1
    assert len(report.failures) == 1 and report.failures[0].path == str(bad)
    assert report.failures[0].reason.startswith(reason), report.failures[0].reason


def test_corrupt_pdf_is_reported(store, tmp_path):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(pdf_bytes(REPORT_PAGES)[:200])
    report = ingest_paths(store, [bad])
    assert [(f.path, f.reason.split(" (")[0]) for f in report.failures] == [(str(bad), "not a readable PDF")]
    assert report.failures == [IngestFailure(str(bad), report.failures[0].reason)]
