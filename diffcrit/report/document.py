"""The result documents (docs/design.md §9, schema_version 1), built, written, read and validated; the
``Result`` object.

``read_document`` is the one reader of result files (check, plot, guide --critical-from, predict
--compare): readable JSON, written by diffcrit, of the kind asked for, of the schema_version this
diffcrit reads, valid against the JSON Schema shipped in ``diffcrit/report/schema/``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import platform
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, TypeVar

from ..errors import UserError
from ..io import atomic_write_text, read_text

if TYPE_CHECKING:
    import pandas
    import torch  # reading and writing documents does not need it (`diffcrit check`, `plot`)

SCHEMA_VERSION = 1
SCHEMA_FILE = "result.schema.json"

TIME_CONVENTION = {
    "frame": "variance-exploding: y = x0 + sigma * n (docs/design.md §2)",
    "t": "t = log(1 + sigma^2) = -log(alpha_bar), the OU time of dx = -x/2 dt + dW",
    "vp_models": "y = x_t / sqrt(alpha_bar), sigma^2 = (1 - alpha_bar) / alpha_bar",
    "order": "steps are listed in generation order (sigma and t decreasing)",
    "stiffness": "s(k) = 1 - <v_k, J v_k>, J = dD/dy; s < 0: the mode grows as noise is removed",
    "k_units": "radians per pixel; shells[n] = 2 pi n / L",
    "lengths": "pixels",
}


KIND_ANALYZE, KIND_GUIDE, KIND_PREDICT, KIND_SUGGESTION = "analyze", "guide", "predict", "guide-suggestion"
KIND_REPRODUCE = "reproduce"
SCHEMA_FILES = {KIND_ANALYZE: SCHEMA_FILE, KIND_GUIDE: "guide.schema.json", KIND_PREDICT: "predict.schema.json",
                KIND_SUGGESTION: "guide-suggestion.schema.json", KIND_REPRODUCE: "reproduce.schema.json"}
RESULT_KINDS = (KIND_ANALYZE, KIND_GUIDE)  # the kinds with curves to plot and compare


def schema(kind: str = KIND_ANALYZE) -> dict:
    """The JSON Schema shipped with the package for a document ``kind`` (analyze, guide, predict, guide-suggestion,
    reproduce)."""
    return json.loads(resources.files("diffcrit.report").joinpath("schema", SCHEMA_FILES[kind]).read_text())


# --------------------------------------------------------------------------------------------
# Reading result documents


def read_document(path: Path | str, kind: str | tuple[str, ...] = KIND_ANALYZE, role: str = "result") -> dict:
    """The result document in ``path``, validated (``validate_document``); any fault is one ``UserError`` line.

    ``kind``: the kind(s) accepted; ``role`` names the file in messages (e.g. "baseline").
    """
    path = Path(path)
    return parse_document(read_text(path, role), kind, f"{role} {path}")


def parse_document(text: str, kind: str | tuple[str, ...] = KIND_ANALYZE, source: str = "result") -> dict:
    """The result document in the JSON ``text``, validated; any fault is one ``UserError`` line naming ``source``."""
    try:
        doc = json.loads(text, parse_constant=_no_constant)
        validate_document(doc, kind, source)
    except json.JSONDecodeError as err:
        raise UserError(f"{source} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except _NonFinite as err:
        raise UserError(f"{source} holds {err.args[0]}, which diffcrit never writes (it writes null)",
                        "was it edited by hand? write it again with diffcrit") from None
    except RecursionError:
        raise UserError(f"{source} is nested too deeply to be a diffcrit result") from None
    return doc


class _NonFinite(ValueError):
    """NaN or Infinity in a document read: ``write_document`` refuses them, so the file was not written by it."""


def _no_constant(name: str) -> float:
    raise _NonFinite(name)


def validate_document(doc: Any, kind: str | tuple[str, ...] = KIND_ANALYZE, source: str = "result") -> str:
    """Check a result document in memory: written by diffcrit, this schema_version, an accepted kind,
    valid against the shipped schema. -> its kind."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    wanted = " or ".join(kinds)
    if not isinstance(doc, Mapping) or "schema_version" not in doc:
        raise UserError(f"{source} is not a diffcrit result (no schema_version)",
                        f"give a JSON file written by diffcrit {wanted}")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        raise UserError(f"{source} has schema_version {version!r}; this diffcrit reads schema_version {SCHEMA_VERSION}",
                        "upgrade diffcrit" if newer else f"run diffcrit {wanted} again to write it anew")
    found = _kind_of(doc)
    if found not in kinds:
        what = f"a {found} result" if isinstance(found, str) else "a document of no known kind"
        raise UserError(f"{source} is {what}, not {' or '.join(_article(k) + ' ' + k for k in kinds)} result")
    from jsonschema.exceptions import best_match

    error = best_match(_validator(found).iter_errors(doc))
    if error is not None:
        raise UserError(f"{source} does not match the {found} result schema: {_schema_error(error)}",
                        "was it edited by hand? write it again with diffcrit")
    return found


def result_kind(doc: Mapping[str, Any], source: str = "result") -> str:
    """``analyze`` or ``guide``: the kind of a result in memory (e.g. for plotting)."""
    kind = _kind_of(doc)
    if kind not in RESULT_KINDS:
        raise UserError(f"{source} has unknown kind {kind!r}", f"allowed: {', '.join(RESULT_KINDS)}")
    return kind


def _kind_of(doc: Mapping[str, Any]) -> Any:
    return doc.get("kind", KIND_ANALYZE if "steps" in doc else None)  # analyze results before `kind` existed


@functools.lru_cache(maxsize=None)
def _validator(kind: str):
    from jsonschema.validators import validator_for

    shipped = schema(kind)
    return validator_for(shipped)(shipped)


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"), (type(None), "null"))


def _schema_error(error) -> str:
    """One short line for a schema violation, naming the path of the bad field (e.g. steps[3].t)."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    where = where or "the document"
    if error.validator == "type":
        allowed = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        got = next(name for cls, name in _JSON_TYPES if isinstance(error.instance, cls))
        return f"{where} must be {' or '.join(allowed)}, got {got}"
    if error.validator == "minItems":
        least = error.validator_value
        return f"{where} needs at least {least} {'entry' if least == 1 else 'entries'}, got {len(error.instance)}"
    return f"{where}: {textwrap.shorten(error.message, 120)}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, tensors and numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "tolist"):
        return clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def environment(device: torch.device, probe_method: str, dtype: str, probe_note: str | None = None) -> dict:
    import diffusers
    import numpy
    import torch

    from .. import __version__

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "numpy": numpy.__version__, "diffcrit": __version__,
           "device": str(device), "dtype": dtype, "threads": torch.get_num_threads(), "probe_method": probe_method}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if probe_note:
        env["probe_note"] = probe_note
    return env


def header(kind: str, config: dict, *, model: dict | None = None, environment: dict | None = None,
           time_convention: bool = True) -> dict:
    """The fields every document opens with, in this order: schema_version, kind, diffcrit_version,
    created, model (when given), config, environment (when given), time_convention (unless False)."""
    from .. import __version__

    head = {"schema_version": SCHEMA_VERSION, "kind": kind, "diffcrit_version": __version__, "created": now_iso()}
    if model is not None:
        head["model"] = model
    head["config"] = config
    if environment is not None:
        head["environment"] = environment
    if time_convention:
        head["time_convention"] = TIME_CONVENTION
    return head


def write_document(document: dict, path: Path | str | None = None, indent: int = 2) -> str:
    """The JSON text of a result document (NaN is an error: ``clean`` first); written atomically to ``path``."""
    text = json.dumps(document, indent=indent, allow_nan=False) + "\n"
    if path is not None:
        atomic_write_text(path, text)
    return text


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


OutcomeT = TypeVar("OutcomeT", bound="Outcome")


@dataclass
class Outcome:
    """A command's JSON document and how it is written and read back; subclasses add what is not serialised."""

    KINDS: ClassVar[tuple[str, ...]] = tuple(SCHEMA_FILES)  # the document kinds ``from_json`` accepts

    document: dict

    def to_dict(self) -> dict:
        return self.document

    def to_json(self, path: Path | str | None = None, indent: int = 2) -> str:
        return write_document(self.document, path, indent)

    @classmethod
    def from_json(cls: type[OutcomeT], source: Path | str) -> OutcomeT:
        """A document written by ``to_json`` (or the CLI's ``--out``), from a path or from its JSON text, validated
        against its shipped schema (``read_document``); what was not serialised (samples) is left at its default.
        ``Result.from_json(r.to_json()).to_dict() == r.to_dict()``."""
        text = source if isinstance(source, str) and source.lstrip().startswith("{") else None
        kinds = cls.KINDS
        document = read_document(source, kinds) if text is None else parse_document(text, kinds, "the JSON text")
        return cls(document)


@dataclass
class Result(Outcome):
    """What ``analyze`` returns: the JSON document plus the final samples (not serialised); ``cache_entry``: the
    result cache file the document was read from (``analyze(reuse=True)``: no samples then), None when measured."""

    KINDS: ClassVar[tuple[str, ...]] = (KIND_ANALYZE,)

    samples: torch.Tensor | None = field(default=None, repr=False)
    cache_entry: Path | None = None

    @property
    def critical(self) -> dict:
        return self.document["critical"]

    @property
    def steps(self) -> list[dict]:
        return self.document["steps"]

    def to_pandas(self) -> pandas.DataFrame:
        """Every per-step curve in long format, one row per (part, step, shell, observable): columns
        ``part, step, t, sigma, shell, observable, value, ci_lo, ci_hi`` (``report/table.py``; docs/outputs.md).
        Needs pandas (``pip install 'diffcrit[pandas]'``)."""
        from .table import COLUMNS, curve_rows, to_frame

        return to_frame(curve_rows(self.document), COLUMNS)
