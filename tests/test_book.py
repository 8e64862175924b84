"""The book builds offline: every chapter page, no broken internal link, every image present,
equations typeset by the local MathJax, and pages render in headless Chromium.

One build, shared by the module (``built_book``), on a small study cache made by
``tests/test_notebooks.py::make_study`` so that the results pages have real figures.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("papermill")
pytest.importorskip("yaml")
import yaml  # noqa: E402

from iimm import book  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_notebooks import make_study  # noqa: E402

pytestmark = pytest.mark.slow
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files.extend(s["file"] for s in ch.get("sections", []))
    return files


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    study = make_study(tmp / "study")
    index = book.build_book(ROOT, tmp / "out", study=study, jobs=2, log=lambda *a: None)
    return index.parent


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.styles.append(a["href"])


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _local(page: Path, ref: str) -> tuple[Path, str] | None:
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    return target, parts.fragment


def test_every_chapter_page_exists(built_book):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = _toc_files(toc)
    assert len(files) >= 6
    for chapter in ("book/intro", "book/method", "book/setup", "book/reproducing", "book/api", "notebooks/prediction"):
        assert chapter in files, f"{chapter} missing from _toc.yml"
    notebooks = {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks <= set(files), f"notebooks not in _toc.yml: {sorted(notebooks - set(files))}"
    for f in files:
        page = built_book / f"{f}.html"
        assert page.is_file(), f"chapter {f} has no page {page}"
        assert page.stat().st_size > 2000
    assert (built_book / "index.html").is_file()
    # every results notebook of the toc was executed into the build tree, with outputs
    import nbformat

    for f in files:
        if f.startswith("notebooks/"):
            nb = nbformat.read(built_book.parent / "source" / f"{f}.ipynb", as_version=4)
            outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
            assert outputs, f"{f} was not executed"
            assert not [o for o in outputs if o.output_type == "error"], f"{f} has an error output"


def test_no_broken_internal_links_and_every_image_exists(built_book):
    # the theme copies Jinja templates (*.html) into _static/: they are not pages
    pages = sorted(p for p in built_book.rglob("*.html") if "_static" not in p.relative_to(built_book).parts)
    assert len(pages) >= 8
    parsed = {p.resolve(): _parse(p) for p in pages}
    checked = 0
    for page, refs in parsed.items():
        for ref in refs.links + refs.scripts + refs.styles:
            loc = _local(page, ref)
            if loc is None:
                continue
            target, frag = loc
            if target.suffix == "" and target.is_dir():
                target = target / "index.html"
            assert target.exists(), f"{page.relative_to(built_book)} links to missing {ref}"
            if frag and target.suffix == ".html" and target in parsed and frag not in ("", "top"):
                assert frag in parsed[target].ids, f"{page.relative_to(built_book)}: anchor {ref} not found"
            checked += 1
        for src in refs.images:
            loc = _local(page, src)
            if loc is None:
                continue
            assert loc[0].is_file() and loc[0].stat().st_size > 0, f"{page.relative_to(built_book)}: image {src} missing"
            checked += 1
    assert checked > 100


def test_results_pages_have_figures(built_book):
    demo = _parse(built_book / "notebooks" / "measures_demo.html")
    assert len([s for s in demo.images if s.endswith(".png")]) >= 2


def test_offline_no_remote_scripts_and_local_mathjax(built_book):
    for page in built_book.rglob("*.html"):
        if "_static" in page.relative_to(built_book).parts:
            continue
        refs = _parse(page)
        remote = [s for s in refs.scripts + refs.styles if urlsplit(s).scheme in ("http", "https") or s.startswith("//")]
        assert not remote, f"{page.name} loads {remote}"
    if book.find_mathjax(ROOT) is None:
        pytest.skip("no local MathJax 2 on this machine (apt-get install libjs-mathjax): equations show as TeX")
    method = _parse(built_book / "book" / "method.html")
    mj = [s for s in method.scripts if "mathjax/MathJax.js" in s]
    assert mj, "method.html does not load the local MathJax"
    target, _ = _local((built_book / "book" / "method.html").resolve(), mj[0])
    assert target.is_file()
    assert (target.parent / "jax" / "output" / "CommonHTML" / "jax.js").is_file()


def test_failing_notebook_stops_the_build_naming_notebook_and_cell(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True)
    (src / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: 'off'\n")
    (src / "_toc.yml").write_text("format: jb-book\nroot: notebooks/broken\n")
    nb = new_notebook(cells=[
        new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("y = x + 1"),
        new_code_cell("raise ValueError('planted failure')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src / "notebooks" / "broken.ipynb")
    with pytest.raises(book.NotebookFailed, match=r"notebook broken failed in cell 2 .*ValueError: planted failure") as err:
        book.build_book(src, tmp_path / "out", jobs=1, log=lambda *a: None)
    # no parameter is passed, so papermill injects no cell: the failing cell is the third (index 2)
    assert err.value.cell_index == 2
    assert "raise ValueError('planted failure')" in str(err.value)
    assert err.value.executed.is_file()
    assert not (tmp_path / "out" / "html").exists()


def test_unknown_param_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no_such_parameter"):
        book.build_book(ROOT, tmp_path / "out", params={"no_such_parameter": 1}, notebooks=["measures_demo"],
                        log=lambda *a: None)


def test_parse_params():
    assert book.parse_params(["a=1", "b=[1, 2]", "c=hello", "d=0.5", "e=null", "f=x=y"]) == {
        "a": 1, "b": [1, 2], "c": "hello", "d": 0.5, "e": None, "f": "x=y",
    }
    with pytest.raises(ValueError, match="k=v"):
        book.parse_params(["novalue"])
    with pytest.raises(ValueError, match="identifier"):
        book.parse_params(["1x=2"])


def test_cli_reports_bad_jobs(capsys):
    assert book.main(["build", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _screenshot(exe: str, url: str, out: Path, profile: Path, height: int = 1600) -> Path:
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
        f"--window-size=1280,{height}", "--virtual-time-budget=10000", f"--screenshot={out}", url,
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert out.is_file(), f"chromium wrote no screenshot for {url}"
    return out


def test_pages_render_in_headless_chromium(built_book, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); cannot take screenshots")
    import matplotlib.image as mpimg

    profile = tmp_path / "profile"
    for page, min_dark in (("index.html", 0.01), ("notebooks/measures_demo.html", 0.02)):
        shot = _screenshot(exe, (built_book / page).as_uri(), tmp_path / (page.replace("/", "_") + ".png"), profile,
                           height=3000 if "notebooks" in page else 1600)
        img = mpimg.imread(shot)[..., :3]
        assert img.std() > 0.05, f"{page}: blank screenshot"
        dark = float((img.mean(axis=2) < 0.6).mean())
        assert dark > min_dark, f"{page}: only {dark:.3%} non-background pixels"
        colour = float((img.max(axis=2) - img.min(axis=2) > 0.25).mean())
        if "notebooks" in page:  # the seaborn figures are coloured
            assert colour > 0.003, f"{page}: no coloured figure pixels ({colour:.3%})"
    if book.find_mathjax(ROOT) is None:
        return  # no local MathJax to check (see test_offline_no_remote_scripts_and_local_mathjax)
    # MathJax typesets the equations offline: the DOM holds CommonHTML math afterwards
    dom = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", (built_book / "book" / "method.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert "mjx-chtml" in dom, "MathJax did not typeset method.html"


def test_add_cli_registers_iimm_book():
    import argparse

    parser = argparse.ArgumentParser(prog="iimm")
    book.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["book", "--study", "s", "--param", "ci_level=0.9", "--param", "models=[\"a\"]",
                              "--output", "o", "--jobs", "3"])
    assert (args.study, args.output, args.jobs) == ("s", "o", 3)
    assert book.parse_params(args.param) == {"ci_level": 0.9, "models": ["a"]}
    assert args.func is book._run


def test_refuses_to_overwrite_folders_it_did_not_make(tmp_path):
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not made by iimm book"):
        book.build_book(ROOT, tmp_path, notebooks=["measures_demo"], log=lambda *a: None)
    assert (tmp_path / "html" / "precious.txt").read_text() == "keep me"
