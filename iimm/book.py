"""Build the IIMM Jupyter Book: execute the notebooks, then render the HTML.

``iimm book`` (and ``make book``, through ``python -m iimm.book build``) does two
things, in this order:

1. Execute every notebook of ``notebooks/`` with papermill into the *build
   tree* (``<output>/source/notebooks/``), in parallel (``--jobs``), passing
   each one the study folder to read (``--study``) and any ``--param k=v``
   that the notebook declares in its ``parameters`` cell. The notebooks in git
   stay free of outputs; the executed copies live only in the build tree.
   A notebook that fails stops the build with the notebook and the cell named.
2. Run ``jupyter-book build`` on the build tree with notebook execution off
   (``execute_notebooks: off`` in ``_config.yml``) and move the HTML to
   ``<output>/html``.

Equations render offline: MathJax 2 is served from the book's own
``_static/mathjax`` folder, copied at build time from a local MathJax 2 tree:
``$IIMM_MATHJAX`` if set, else Debian's ``libjs-mathjax``
(``/usr/share/javascript/mathjax``), else an npm install of ``mathjax@2``
(``node_modules/mathjax``) next to the book. ``_config.yml`` points Sphinx's
``mathjax_path`` at that copy, so the book never loads a CDN.

Output layout (``--output``, default ``_build``)::

    <output>/source/      the staged book: _config.yml, _toc.yml, book/, executed notebooks/
    <output>/source/notebooks/outputs/<notebook>/   tables and figures each notebook wrote
    <output>/html/        the rendered book (open html/index.html)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "build_book",
    "execute_notebooks",
    "find_mathjax",
    "copy_mathjax",
    "parse_params",
    "notebook_parameters",
    "NotebookFailed",
    "add_cli",
    "main",
]

#: default study folder (relative to the source tree): the shipped sandbox cache
DEFAULT_STUDY = Path("data") / "sandbox"
#: reference numbers of the paper, shown beside ours
REFERENCE_CSV = Path("data") / "reference" / "paper_results.csv"

# The parts of a MathJax 2 tree that the TeX -> CommonHTML configuration loads.
_MATHJAX_CONFIG = "TeX-AMS_CHTML"
_MATHJAX_PARTS: tuple[str, ...] = (
    "MathJax.js",
    f"config/{_MATHJAX_CONFIG}.js",
    "extensions",
    "jax/input/TeX",
    "jax/element",
    "jax/output/CommonHTML",
    "fonts/HTML-CSS/TeX/woff",
    "localization/en",
)
_MARKER = ".iimm-book"  # marks an output folder as ours, so that rebuilding may replace source/ and html/
_VENDOR_DIR = "_vendor"  # listed in html_static_path: copied into the book's _static/
_MATHJAX_CANDIDATES: tuple[Path, ...] = (
    Path("/usr/share/javascript/mathjax"),  # Debian/Ubuntu: apt-get install libjs-mathjax
    Path("/usr/share/nodejs/mathjax"),
)


class NotebookFailed(RuntimeError):
    """A notebook raised while executing; the message names the notebook and the cell."""

    def __init__(
        self, notebook: str, cell_index: int | None, exec_count: int | None, error: str, executed: Path,
        source: str = "",
    ):
        self.notebook = notebook
        self.cell_index = cell_index  #: 0-based index of the cell in the executed notebook
        self.exec_count = exec_count
        self.executed = executed
        where = f"cell {cell_index} (0-based, of the executed notebook)" if cell_index is not None else "an unknown cell"
        if exec_count is not None:
            where += f" [execution count {exec_count}]"
        lines = [ln for ln in source.strip().splitlines() if ln.strip()]
        if lines:
            where += f" starting {lines[0].strip()[:80]!r}"
        super().__init__(
            f"notebook {notebook} failed in {where}: {error}. "
            f"The partially executed notebook, with the traceback, is at {executed}"
        )


# --------------------------------------------------------------------------- MathJax


def find_mathjax(source: Path | None = None) -> Path | None:
    """Return a local MathJax 2 tree (folder holding ``MathJax.js``), or ``None``.

    Looks at ``$IIMM_MATHJAX``, Debian's ``libjs-mathjax`` and ``node_modules/mathjax``
    (``npm install mathjax@2``) under ``source`` and the current folder.
    """
    env = os.environ.get("IIMM_MATHJAX")
    if env:
        p = Path(env).expanduser()
        if not (p / "MathJax.js").is_file():
            raise FileNotFoundError(f"IIMM_MATHJAX={env} does not hold MathJax.js (a MathJax 2 tree is needed)")
        return p
    candidates = list(_MATHJAX_CANDIDATES)
    for base in (source, Path.cwd()):
        if base is not None:
            candidates.append(Path(base) / "node_modules" / "mathjax")
    for p in candidates:
        if (p / "MathJax.js").is_file() and (p / "config" / f"{_MATHJAX_CONFIG}.js").is_file():
            return p
    return None


def copy_mathjax(src: Path, dest: Path) -> Path:
    """Copy the parts of MathJax 2 that ``TeX-AMS_CHTML`` needs from ``src`` to ``dest``.

    Symbolic links (Debian links the fonts from ``fonts-mathjax``) are followed,
    so that the copy is self-contained. About 2 MB.
    """
    src, dest = Path(src), Path(dest)
    for part in _MATHJAX_PARTS:
        s = src / part
        if not s.exists():
            raise FileNotFoundError(f"MathJax tree {src} lacks {part}; install a complete MathJax 2 (libjs-mathjax)")
        d = dest / part
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, symlinks=False, dirs_exist_ok=True)
        else:
            shutil.copyfile(s, d)
    return dest


# --------------------------------------------------------------------------- parameters


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``k=v`` strings; ``v`` is read as JSON when it parses (numbers, lists, null), else a string."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--param expects k=v; got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"--param name {key!r} is not a valid Python identifier")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names and default values declared in a notebook's ``parameters`` cell."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


# --------------------------------------------------------------------------- execution


@dataclass
class _Job:
    name: str
    source: Path
    target: Path
    parameters: dict[str, Any]
    cwd: Path


def _execute_one(job: _Job, timeout: float | None, kernel: str | None) -> float:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(job.source),
            str(job.target),
            parameters=job.parameters,
            cwd=str(job.cwd),
            kernel_name=kernel,
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
        )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            job.name, exc.cell_index, exc.exec_count, f"{exc.ename}: {exc.evalue}", job.target, exc.source or ""
        ) from exc
    except Exception as exc:  # kernel died, timeout, bad notebook file
        raise NotebookFailed(job.name, None, None, f"{type(exc).__name__}: {exc}", job.target) from exc
    return time.perf_counter() - t0


def execute_notebooks(
    notebooks: Sequence[Path],
    target_dir: Path,
    *,
    study: Path,
    params: Mapping[str, Any] | None = None,
    reference: Path | None = None,
    jobs: int | None = None,
    timeout: float | None = 600,
    kernel: str | None = None,
    log=print,
) -> dict[str, float]:
    """Execute ``notebooks`` with papermill into ``target_dir``, ``jobs`` at a time.

    Each notebook gets ``study``, ``output_dir`` (``target_dir/outputs/<name>``) and
    ``reference`` (default: this checkout's ``data/reference/paper_results.csv``) when its
    ``parameters`` cell declares them, plus every entry of
    ``params`` that it declares. A key of ``params`` declared by no notebook is a
    ``ValueError``. Returns the wall time of each notebook (seconds).

    Raises
    ------
    NotebookFailed
        At the first notebook that fails (the others still running are awaited,
        those not started are cancelled).
    """
    params = dict(params or {})
    if reference is None:
        from .paths import repo_root

        root = repo_root()
        if root is not None and (root / REFERENCE_CSV).is_file():
            reference = root / REFERENCE_CSV
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    declared_any: set[str] = set()
    work: list[_Job] = []
    for nb in notebooks:
        nb = Path(nb)
        declared = notebook_parameters(nb)
        declared_any |= set(declared)
        name = nb.stem
        given: dict[str, Any] = {}
        defaults = {"study": str(study), "output_dir": str(target_dir / "outputs" / name)}
        if reference is not None:
            defaults["reference"] = str(reference)
        for key, value in {**defaults, **params}.items():
            if key in declared:
                given[key] = value
        work.append(_Job(name, nb, target_dir / nb.name, given, target_dir))
    unknown = sorted(set(params) - declared_any)
    if unknown:
        raise ValueError(f"--param {', '.join(unknown)}: no notebook declares such a parameter")
    if not work:
        return {}
    n_jobs = max(1, min(jobs or (os.cpu_count() or 1), len(work)))
    times: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        futures = {pool.submit(_execute_one, job, timeout, kernel): job for job in work}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()
            wait(pending)
            # report the first failure in notebook order
            first = min(failed, key=lambda f: work.index(futures[f]))
            raise first.exception()  # type: ignore[misc]
        for f, job in futures.items():
            times[job.name] = f.result()
            log(f"  executed {job.name}.ipynb in {times[job.name]:.1f} s")
    return times


# --------------------------------------------------------------------------- the book


def _source_root(source: str | os.PathLike | None) -> Path:
    if source is None:
        from .paths import repo_root

        root = repo_root()
        if root is None:
            raise FileNotFoundError(
                "no book source given and iimm is not run from a source checkout; "
                "pass source= (the folder holding _config.yml, _toc.yml, book/ and notebooks/)"
            )
        source = root
    root = Path(source).resolve()
    for name in ("_config.yml", "_toc.yml"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"book source {root} has no {name}")
    return root


def build_book(
    source: str | os.PathLike | None = None,
    output: str | os.PathLike = "_build",
    *,
    study: str | os.PathLike | None = None,
    params: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    notebooks: Sequence[str] | None = None,
    timeout: float | None = 600,
    kernel: str | None = None,
    log=print,
) -> Path:
    """Execute the notebooks with papermill and build the HTML book; return ``<output>/html/index.html``.

    Parameters
    ----------
    source
        Folder holding ``_config.yml``, ``_toc.yml``, ``book/`` and ``notebooks/``
        (default: this checkout).
    output
        Build folder (relative paths are taken from ``source``); the HTML goes to
        ``<output>/html``.
    study
        Study cache folder the notebooks read (default ``<source>/data/sandbox``).
        Notebooks that need it render a "no study cache found" note when it is missing.
    params
        Extra papermill parameters, given to the notebooks that declare them.
    jobs
        Notebooks executed at once (default: the number of CPUs).
    notebooks
        Notebook names (stems) to execute; default all of ``notebooks/*.ipynb``.
    """
    root = _source_root(source)
    out = Path(output)
    out = (out if out.is_absolute() else root / out).resolve()
    study_dir = Path(study) if study is not None else root / DEFAULT_STUDY
    study_dir = (study_dir if study_dir.is_absolute() else Path.cwd() / study_dir).resolve()
    staging = out / "source"
    marker = out / _MARKER
    ours = [p for p in (staging, out / "html") if p.exists()]
    if ours and not (marker.is_file() or (staging / "_toc.yml").is_file()):
        raise ValueError(
            f"output folder {out} already holds {', '.join(p.name + '/' for p in ours)} not made by iimm book; "
            "choose another --output (its source/ and html/ are replaced at every build)"
        )
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    marker.write_text("made by iimm book: source/ and html/ are replaced at every build\n")
    t0 = time.perf_counter()

    # 1. stage the static sources
    for name in ("_config.yml", "_toc.yml"):
        shutil.copyfile(root / name, staging / name)
    if (root / "book").is_dir():
        shutil.copytree(root / "book", staging / "book")
    mathjax = find_mathjax(root)
    if mathjax is None:
        log(
            "warning: no local MathJax 2 found (apt-get install libjs-mathjax, or npm install mathjax@2, "
            "or set IIMM_MATHJAX); equations will show as TeX source"
        )
    else:
        # not under _static/: when a _static/ folder exists, Jupyter Book adds every .js file
        # of every static path to every page
        copy_mathjax(mathjax, staging / _VENDOR_DIR / "mathjax")
    (staging / _VENDOR_DIR).mkdir(exist_ok=True)

    # 2. execute the notebooks into the build tree
    nb_dir = root / "notebooks"
    all_nbs = sorted(nb_dir.glob("*.ipynb")) if nb_dir.is_dir() else []
    if notebooks is not None:
        wanted = list(notebooks)
        missing = [n for n in wanted if not (nb_dir / f"{n}.ipynb").is_file()]
        if missing:
            raise ValueError(f"notebooks {missing} not found in {nb_dir}")
        all_nbs = [nb_dir / f"{n}.ipynb" for n in wanted]
    reference = root / REFERENCE_CSV
    log(f"executing {len(all_nbs)} notebook(s) on study {study_dir} with {jobs or os.cpu_count()} job(s)")
    # the kernels inherit this environment; MPLBACKEND is dropped so that figures use the inline backend
    env_backup = {k: os.environ.get(k) for k in ("PYTHONPATH", "MPLBACKEND", "HF_HUB_OFFLINE")}
    pkg_root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p)
    os.environ.pop("MPLBACKEND", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        execute_notebooks(
            all_nbs,
            staging / "notebooks",
            study=study_dir,
            params=params,
            reference=reference if reference.is_file() else None,
            jobs=jobs,
            timeout=timeout,
            kernel=kernel,
            log=log,
        )
        t1 = time.perf_counter()
        # 3. render with execution off
        jb_out = out / ".jupyter-book"
        cmd = [_jupyter_book(), "build", "--all", "--path-output", str(jb_out), str(staging)]
        log("running " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if proc.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "WARNING" in line]
    for line in warnings:
        log(line)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    os.replace(jb_out / "_build" / "html", html)
    shutil.rmtree(jb_out, ignore_errors=True)
    log(
        f"book built in {time.perf_counter() - t0:.0f} s (notebooks {t1 - t0:.0f} s, "
        f"jupyter-book {time.perf_counter() - t1:.0f} s, {len(warnings)} warning(s)): {html / 'index.html'}"
    )
    return html / "index.html"


def _jupyter_book() -> str:
    """The ``jupyter-book`` executable beside this Python, else the one on PATH."""
    here = Path(sys.executable).parent / "jupyter-book"
    if here.is_file():
        return str(here)
    found = shutil.which("jupyter-book")
    if found is None:
        raise FileNotFoundError("jupyter-book (1.x) is not installed: pip install 'iimm[book]'")
    return found


# --------------------------------------------------------------------------- CLI


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default=None, help="study cache folder the notebooks read (default: data/sandbox)")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V",
        help="notebook parameter (JSON value or string), repeatable; e.g. --param ci_level=0.9",
    )
    p.add_argument("--output", default="_build", help="build folder; the HTML goes to OUTPUT/html (default: _build)")
    p.add_argument("--jobs", type=int, default=None, help="notebooks executed in parallel (default: CPU count)")
    p.add_argument("--source", default=None, help="book source folder (default: this checkout)")
    p.add_argument("--notebook", action="append", default=None, help="execute only this notebook (repeatable)")


def _run(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1; got {args.jobs}")
    output = args.output
    if args.source is None and not Path(output).is_absolute():
        output = str(Path.cwd() / output)  # relative to where the user runs the command
    index = build_book(
        args.source, output, study=args.study, params=parse_params(args.param), jobs=args.jobs,
        notebooks=args.notebook,
    )
    print(index)
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``iimm book``."""
    p = subparsers.add_parser(
        "book", help="execute the notebooks and build the HTML book",
        description="Execute every notebook with papermill on a study cache and build the Jupyter Book.",
    )
    _add_arguments(p)
    p.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iimm.book [build] [options]``."""
    parser = argparse.ArgumentParser(prog="python -m iimm.book", description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="build", choices=["build"])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"iimm book: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
