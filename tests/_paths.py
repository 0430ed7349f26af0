"""Where the app's reference Drizzle project lives: `shared/` beside the checkout (as CI lays
it out), else the development machine's /work/shared."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def reference_app() -> Path:
    for shared in (ROOT.parent / "shared", Path("/work/shared")):
        candidate = shared / "reference" / "drizzle-app"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared/reference/drizzle-app not found beside the checkout or in /work/shared")


REFERENCE_APP = reference_app()
