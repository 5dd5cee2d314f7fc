"""The lesson file format: Markdown with TOML front matter and one fenced ```step block per step.

A lesson is a file `lessons/<nn>-<slug>.md`::

    +++
    id = "fool-a-model"            # unique among lessons: [a-z0-9-]
    title = "Fool a model"
    order = 1                      # position in the lesson list
    summary = "One sentence."
    [models.victim]                # a model alias the steps name: the newest stored model matching it
    recipe = "standard"            # a training recipe name ("standard", "pgd", "fgsm-rs", "trades", "dp-sgd")
    arch = "cnn"
    dataset = "mnist5k"
    +++
    Introduction (Markdown).

    ## Step title
    A paragraph of explanation, with the paper.
    ```step
    id = "fgsm-by-hand"            # unique in the lesson: [a-z0-9-]
    page = "attack_lab"            # the lab page the "do this" link opens (optional)
    model = "victim"               # the link selects this model (optional; an alias from [models])
    link = "Open the Attack Lab"   # the link's label (optional)
    [params]                       # the link's other URL parameters, as the page's "copy link" shows them
    eps_linf = 0.05
    [check]                        # how the lab verifies the step (see CHECKS)
    kind = "min_flip_eps"
    ...
    ```

Every problem found is reported at once, each naming the file and the step, in one `LessonError`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlsec_core.errors import InvalidInputError

#: The lab pages a step may open (their URL paths; tests/ui/test_lessons_ui.py checks each one is in app.py).
PAGES = (
    "attack_lab", "robustness", "detection", "certification", "models", "runs", "privacy_budget", "membership",
    "inversion", "audit", "theft",
)  # fmt: skip

#: Checkpoint kinds and their fields: (required, optional) names besides `kind`.
CHECKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # the learner types the smallest ε that flips a gallery image; the lab runs the attack at ε and one step below
    "min_flip_eps": (("model", "gallery_class", "gallery_index"), ("attack", "step", "question")),
    # a finished (done) run of `study` by this participant on these models, whose config matches `where`
    "run_done": (("study",), ("models", "where", "question")),
    # a stored model matching the alias exists (the learner trained it)
    "model_stored": (("model",), ("question",)),
    # a multiple-choice question: `answer` is the index of the right option in `options`
    "choice": (("question", "options", "answer"), ("explain",)),
}

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_FRONT = "+++"
_STEP_FENCE = "```step"
_MODEL_FIELDS = {"recipe", "arch", "dataset", "name"}


class LessonError(InvalidInputError):
    """A lesson file that cannot be read: every problem, each naming the file and the step."""


@dataclass(frozen=True)
class ModelRef:
    """Which stored model an alias means: the newest one with this recipe, architecture and dataset (and name)."""

    alias: str
    recipe: str
    arch: str
    dataset: str
    name: str | None = None

    def describe(self) -> str:
        named = f" named {self.name!r}" if self.name else ""
        return f"a {self.arch} trained on {self.dataset} with the {self.recipe!r} recipe{named}"


@dataclass(frozen=True)
class Check:
    """A step's checkpoint: its kind and its fields (validated against CHECKS)."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    @property
    def models(self) -> list[str]:
        """The aliases this check reads (one `model`, or a list `models`)."""
        one = self.fields.get("model")
        return [one] if one else list(self.fields.get("models", []))


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    text: str  # Markdown: the explanation
    check: Check
    page: str | None = None
    model: str | None = None
    link: str = "Do this"
    params: dict[str, str] = field(default_factory=dict)  # the link's URL parameters besides the model


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    order: int
    summary: str
    intro: str
    models: dict[str, ModelRef]
    steps: tuple[Step, ...]
    path: Path

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise LessonError(f"{self.path.name}: no step {step_id!r}.")


def parse_lesson(text: str, path: Path) -> Lesson:
    """Parse and validate one lesson file's text; `path` names it in the errors."""
    problems: list[str] = []
    where = path.name
    lines = text.splitlines()
    if not lines or lines[0].strip() != _FRONT:
        raise LessonError(f"{where}: a lesson starts with a '+++' line, then TOML front matter, then '+++'.")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == _FRONT)
    except StopIteration:
        raise LessonError(f"{where}: the front matter has no closing '+++' line.") from None
    try:
        front = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as err:
        raise LessonError(f"{where}: the front matter is not valid TOML: {err}.") from err
    lesson_id = _text(front, "id", where, problems)
    if lesson_id and not _ID_RE.match(lesson_id):
        problems.append(f"{where}: id {lesson_id!r} must be lower-case letters, digits and '-'.")
    title = _text(front, "title", where, problems)
    order = front.get("order")
    if not isinstance(order, int) or isinstance(order, bool):
        problems.append(f"{where}: 'order' must be an integer, got {order!r}.")
        order = 0
    summary = str(front.get("summary", ""))
    unknown = set(front) - {"id", "title", "order", "summary", "models"}
    if unknown:
        problems.append(
            f"{where}: unknown front matter keys {sorted(unknown)} (known: id, title, order, summary, models)."
        )
    models = _models(front.get("models", {}), where, problems)

    body = lines[end + 1 :]
    heads = [i for i, line in enumerate(body) if line.startswith("## ")]
    intro = "\n".join(body[: heads[0] if heads else len(body)]).strip()
    steps: list[Step] = []
    for n, start in enumerate(heads):
        stop = heads[n + 1] if n + 1 < len(heads) else len(body)
        step = _step(body[start:stop], n + 1, where, models, problems)
        if step is not None:
            steps.append(step)
    if not heads:
        problems.append(f"{where}: no steps: each step is a '## Title' section with a ```step block.")
    seen: set[str] = set()
    for s in steps:
        if s.id in seen:
            problems.append(f"{where}: step id {s.id!r} is used twice.")
        seen.add(s.id)
    if problems:
        raise LessonError("\n".join(problems))
    return Lesson(lesson_id, title, int(order), summary, intro, models, tuple(steps), path)


def load_lesson(path: str | Path) -> Lesson:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LessonError(f"{path.name}: cannot read the lesson file: {err}.") from err
    return parse_lesson(text, path)


def load_lessons(folder: str | Path) -> list[Lesson]:
    """Every `*.md` lesson in `folder` (README.md excepted), by `order`; all files' problems in one LessonError."""
    folder = Path(folder)
    lessons: list[Lesson] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            lessons.append(load_lesson(path))
        except LessonError as err:
            problems.append(str(err))
    ids = [lesson.id for lesson in lessons]
    problems += [
        f"lesson id {i!r} is used by two files." for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    if problems:
        raise LessonError("\n".join(problems))
    return sorted(lessons, key=lambda lesson: (lesson.order, lesson.id))


def _text(table: dict[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: '{key}' must be a non-empty string, got {value!r}.")
        return ""
    return value.strip()


def _models(table: Any, where: str, problems: list[str]) -> dict[str, ModelRef]:
    if not isinstance(table, dict):
        problems.append(f"{where}: [models] must be a table of aliases.")
        return {}
    out: dict[str, ModelRef] = {}
    for alias, ref in table.items():
        if not isinstance(ref, dict):
            problems.append(f"{where}: model alias {alias!r} must be a table (recipe, arch, dataset).")
            continue
        missing = [k for k in ("recipe", "arch", "dataset") if not isinstance(ref.get(k), str)]
        extra = set(ref) - _MODEL_FIELDS
        if missing or extra:
            problems.append(
                f"{where}: model alias {alias!r} "
                + (f"needs {', '.join(missing)}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"has unknown keys {sorted(extra)}" if extra else "")
                + "."
            )
            continue
        out[alias] = ModelRef(alias, ref["recipe"], ref["arch"], ref["dataset"], ref.get("name"))
    return out


def _step(
    lines: list[str], n: int, where: str, models: dict[str, ModelRef], problems: list[str]
) -> Step | None:
    title = lines[0][3:].strip()
    at = f"{where}: step {n} ({title!r})"
    fences = [i for i, line in enumerate(lines) if line.strip() == _STEP_FENCE]
    if len(fences) != 1:
        problems.append(f"{at}: needs exactly one ```step block, found {len(fences)}.")
        return None
    start = fences[0]
    try:
        stop = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
    except StopIteration:
        problems.append(f"{at}: the ```step block is not closed with ```.")
        return None
    try:
        spec = tomllib.loads("\n".join(lines[start + 1 : stop]))
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{at}: the step block is not valid TOML: {err}.")
        return None
    text = "\n".join(lines[1:start] + lines[stop + 1 :]).strip()
    before = len(problems)
    if not text:
        problems.append(f"{at}: needs a paragraph of explanation (Markdown) under its title.")
    step_id = spec.get("id")
    if not isinstance(step_id, str) or not _ID_RE.match(step_id):
        problems.append(f"{at}: 'id' must be lower-case letters, digits and '-', got {step_id!r}.")
    else:
        at = f"{where}: step {n} ({step_id})"
    unknown = set(spec) - {"id", "page", "model", "link", "params", "check"}
    if unknown:
        problems.append(
            f"{at}: unknown keys {sorted(unknown)} (known: id, page, model, link, params, check)."
        )
    page = spec.get("page")
    if page is not None and page not in PAGES:
        problems.append(f"{at}: page {page!r} is not a lab page (one of {', '.join(PAGES)}).")
    model = spec.get("model")
    if model is not None and model not in models:
        problems.append(
            f"{at}: model {model!r} is not an alias of this lesson's [models] ({', '.join(models) or 'none'})."
        )
    params = spec.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, str | int | float | bool) for v in params.values()
    ):
        problems.append(f"{at}: [params] must map URL parameter names to strings, numbers or booleans.")
        params = {}
    if (page is None) and (params or model):
        problems.append(f"{at}: 'params' and 'model' need a 'page' to open.")
    check = _check(spec.get("check"), at, models, problems)
    if len(problems) > before or check is None:
        return None
    url = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    link = str(spec.get("link", "Do this"))
    return Step(str(step_id), title, text, check, page, model, link, url)


def _check(table: Any, at: str, models: dict[str, ModelRef], problems: list[str]) -> Check | None:
    if not isinstance(table, dict) or "kind" not in table:
        problems.append(f"{at}: needs a [check] table with a 'kind' ({', '.join(CHECKS)}).")
        return None
    kind = table["kind"]
    if kind not in CHECKS:
        problems.append(f"{at}: check kind {kind!r} is unknown (one of {', '.join(CHECKS)}).")
        return None
    required, optional = CHECKS[kind]
    fields = {k: v for k, v in table.items() if k != "kind"}
    missing = [k for k in required if k not in fields]
    unknown = sorted(set(fields) - set(required) - set(optional))
    if missing:
        problems.append(f"{at}: a {kind!r} check needs {', '.join(missing)}.")
    if unknown:
        problems.append(
            f"{at}: a {kind!r} check has no field {', '.join(unknown)} (it takes {', '.join(required + optional)})."
        )
    check = Check(kind, fields)
    for alias in check.models:
        if alias not in models:
            problems.append(f"{at}: the check's model {alias!r} is not an alias of this lesson's [models].")
    if kind == "choice":
        options, answer = fields.get("options"), fields.get("answer")
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            problems.append(f"{at}: 'options' must be a list of at least two strings.")
        elif not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
            problems.append(f"{at}: 'answer' must be the index (from 0) of the right option, got {answer!r}.")
    if kind == "min_flip_eps":
        for name in ("gallery_class", "gallery_index"):
            value = fields.get(name)
            if name in fields and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                problems.append(f"{at}: '{name}' must be a non-negative integer, got {value!r}.")
        step = fields.get("step", 0.005)
        if not isinstance(step, int | float) or isinstance(step, bool) or not 0 < step <= 0.1:
            problems.append(f"{at}: 'step' must be a number in (0, 0.1], got {step!r}.")
    if kind == "run_done" and not isinstance(fields.get("where", {}), dict):
        problems.append(f"{at}: 'where' must be a table of config fields and values.")
    return check
