"""Entry point for `streamlit run streamlit_app.py` (what `make run` does): the router lives in app/main.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.main import main  # noqa: E402

main()
