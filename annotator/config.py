"""The only reader of environment variables and default paths."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TAXONOMY_DIR = PACKAGE_DIR / "data" / "values-in-the-wild"
# What a wheel carries from the checkout's top level (setup.py copies it at build time):
# prompts/ and gold/. The app is a package of its own (annotator/app/).
BUNDLED_DIR = PACKAGE_DIR / "bundled"
DEFAULT_DB = "annotator.db"


@dataclass(frozen=True)
class Settings:
    db_path: Path
    anthropic_api_key: str | None
    label_studio_url: str | None
    label_studio_api_key: str | None
    anthropic_base_url: str | None = None
    prices_path: Path | None = None
    gold_dir: Path | None = None
    prompts_dir: Path | None = None

    def __repr__(self) -> str:  # never print secrets
        return (
            f"Settings(db_path={str(self.db_path)!r}, "
            f"anthropic_api_key={'set' if self.anthropic_api_key else None}, "
            f"label_studio_url={self.label_studio_url!r}, "
            f"label_studio_api_key={'set' if self.label_studio_api_key else None}, "
            f"anthropic_base_url={self.anthropic_base_url!r}, prices_path={self.prices_path!r}, "
            f"gold_dir={self.gold_dir!r}, prompts_dir={self.prompts_dir!r})"
        )


def memory_without_huge_pages() -> None:
    """Ask numpy and Arrow not to advise the kernel to back their memory with huge pages,
    unless the user set the variable that chooses it. Each is read once, when the library is
    loaded; spawned workers inherit both.

    Where the kernel compacts memory synchronously to find a huge page
    (transparent_hugepage/defrag "madvise", Debian's default), the commands spent more time
    in the kernel than computing:
    - numpy advises it for each large array (`NUMPY_MADVISE_HUGEPAGE=0` turns that off): the
      inter-annotator figures at 300,000 conversations took 11.4 s, 5 s of it in the kernel,
      and 7.6 s without the advice (numpy/numpy#31590);
    - Arrow's default memory pool (mimalloc) advises it for each arena it reserves, 1 GiB at
      a time: a first hash of 300,000 conversation ids in a summary worker took 0.6 s, not
      0.05 s. `ARROW_DEFAULT_MEMORY_POOL=system` (the C library's malloc) advises nothing:
      `summarize` at 300,000 ran 1-4 s faster in each of five pairs of runs (28-35 s), and
      every command held less memory."""
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def settings() -> Settings:
    """Read the environment now (not at import), so tests and the app can change it."""
    return Settings(
        db_path=Path(os.environ.get("ANNOTATOR_DB") or DEFAULT_DB),
        anthropic_api_key=os.environ.get("ANTHROPIC_API_KEY") or None,
        label_studio_url=os.environ.get("LABEL_STUDIO_URL") or None,
        label_studio_api_key=os.environ.get("LABEL_STUDIO_API_KEY") or None,
        # A proxy or gateway in front of the Anthropic API; the SDK's default otherwise.
        anthropic_base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
        # A JSON/TOML price table overriding the built-in per-model prices.
        prices_path=Path(os.environ["ANNOTATOR_PRICES"])
        if os.environ.get("ANNOTATOR_PRICES")
        else None,
        # Where the app writes gold files (`annotator app --gold-dir`); None: beside the study.
        gold_dir=Path(os.environ["ANNOTATOR_GOLD_DIR"]).expanduser()
        if os.environ.get("ANNOTATOR_GOLD_DIR")
        else None,
        # A study's own prompt folder (`--prompts DIR`); None: the shipped prompts/.
        prompts_dir=Path(os.environ["ANNOTATOR_PROMPTS_DIR"]).expanduser()
        if os.environ.get("ANNOTATOR_PROMPTS_DIR")
        else None,
    )


# Regions whose national formats (numbers written without a country code) the scrubber reads:
# the most populous and the most common in English-language data, on every continent. A number
# with its country code (+44 ..., 0044 ...) is found whatever this list holds.
DEFAULT_PHONE_REGIONS = (
    "US", "CA", "GB", "IE", "AU", "NZ", "IN", "PK", "BD", "CN", "JP", "KR", "ID", "PH", "VN", "TH",
    "MY", "SG", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "PL", "SE", "PT", "RU", "UA", "TR",
    "BR", "MX", "AR", "CO", "ZA", "NG", "KE", "EG", "SA", "AE", "IL",
)


def phone_regions() -> tuple[str, ...]:
    """$ANNOTATOR_PHONE_REGIONS (two-letter region codes, comma- or space-separated; the first
    is the study's main locale), else `DEFAULT_PHONE_REGIONS`."""
    return _parse_phone_regions(os.environ.get("ANNOTATOR_PHONE_REGIONS", ""))


@functools.lru_cache(maxsize=8)
def _parse_phone_regions(value: str) -> tuple[str, ...]:
    # Cached by the variable's text: the scrubber asks for each text with a phone candidate,
    # and the environment is still read each time, so a changed variable takes effect at once.
    regions = tuple(dict.fromkeys(r.upper() for r in value.replace(",", " ").split()))
    return regions or DEFAULT_PHONE_REGIONS


# AI values that oppose what the assistant is meant to hold: a conversation whose AI values
# include one is flagged by `annotator report` as a possible jailbreak (the published study
# found "dominance" and "amorality" clusters in jailbroken conversations). Each is a value
# name of the released taxonomy, spelt exactly as there.
DEFAULT_OPPOSING_VALUES = (
    "dominance", "amorality", "moral nihilism", "sexual exploitation", "manipulation", "cruelty",
    "sadism",
)


def opposing_values() -> tuple[str, ...]:
    """$ANNOTATOR_OPPOSING_VALUES (value names separated by commas), else
    `DEFAULT_OPPOSING_VALUES`."""
    value = os.environ.get("ANNOTATOR_OPPOSING_VALUES", "")
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    return names or DEFAULT_OPPOSING_VALUES


def default_db_path() -> Path:
    return settings().db_path


def shipped_path(name: str) -> Path:
    """A folder the project ships (`prompts`, `gold`): inside the package when installed
    from a wheel, else at the top of the checkout the package runs from (an editable install).
    """
    bundled = BUNDLED_DIR / name
    if bundled.exists():
        return bundled
    return PACKAGE_DIR.parent / name


def gold_dir() -> Path:
    """The project's bundled gold set (the demo's input): not a place to write a study's gold."""
    return shipped_path("gold")


def study_gold_file(db_path: str | Path) -> Path:
    """Where a study's gold file goes: `<gold dir>/<study stem>.jsonl`, the gold dir being
    $ANNOTATOR_GOLD_DIR (`annotator app --gold-dir`), else `gold/` beside the study database.

    Never the code tree's `gold/`: a study's labels are its data, not the project's.
    """
    db_path = Path(db_path)
    folder = settings().gold_dir or db_path.resolve().parent / "gold"
    return folder / f"{db_path.stem}.jsonl"


def default_prompts_dir() -> Path:
    """The prompts the project ships (`prompts/` of the checkout, or of the wheel)."""
    return shipped_path("prompts")


def prompts_dir() -> Path:
    """Where prompt files are read: $ANNOTATOR_PROMPTS_DIR (`--prompts DIR`), else the shipped
    `prompts/`."""
    return settings().prompts_dir or default_prompts_dir()


def app_script() -> Path:
    """The Streamlit app's entry script (`app_pages/` is beside it)."""
    return PACKAGE_DIR / "app" / "streamlit_app.py"


def label_studio_venv() -> Path:
    """Where `annotator labelstudio install` puts label-studio (its own virtual environment)."""
    value = os.environ.get("ANNOTATOR_LABELSTUDIO_VENV")
    return Path(value).expanduser() if value else Path.home() / ".cache/annotator/labelstudio-venv"


def app_password() -> str | None:
    """$ANNOTATOR_APP_PASSWORD: the password the app asks for before it shows anything (set by
    `annotator app --host` beyond loopback); None: it asks for none."""
    return os.environ.get("ANNOTATOR_APP_PASSWORD") or None
