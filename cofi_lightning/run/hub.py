"""Upload a finished export to the Hugging Face Hub (``export.push_to_hub=<repo id>``), after
``results.json`` is written: a failure never costs the local export, and re-running the same
command retries the upload alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi


class HubPushError(RuntimeError):
    """The export is written locally but could not be uploaded."""


def repo_ids(repo: str, points: Sequence[Any]) -> list[str]:
    """The repository of each operating point: ``repo`` for a single target, ``<repo>-s<t>``
    per target on a sparsity path (what the door checks and the upload uses)."""
    return [repo] if len(points) == 1 else [f"{repo}-s{point.label}" for point in points]


def push_export(export_dir: Path, repo_id: str, *, private: bool, message: str) -> str:
    """Create ``repo_id`` if needed and upload ``export_dir`` to it; returns the commit's URL.

    Raises:
        HubPushError: anything the hub client raised, with the local folder and a retry hint.
    """
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(export_dir), commit_message=message, repo_type="model"
        )
    except Exception as err:  # noqa: BLE001  (every hub failure becomes one clear message)
        raise HubPushError(
            f"export.push_to_hub={repo_id}: upload failed ({type(err).__name__}: {err}). The "
            f"export is safe in {export_dir}; log in (`hf auth login` or HF_TOKEN) and re-run the "
            "same command to retry the upload only."
        ) from err
    return str(getattr(info, "commit_url", info))
