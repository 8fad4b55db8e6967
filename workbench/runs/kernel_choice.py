"""Which installed kernel, and which language, a notebook runs on: decided before anything starts.

Resolved as jupyter_client (and so papermill and JupyterLab) resolves it, so a run starts the kernel
the user would get in JupyterLab, and a notebook no installed kernel can run is refused up front.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError


def check_kernel(name: str) -> str:
    """The installed kernel that `name` means, as jupyter_client resolves it; refused up front if none.

    A `KernelManager` is asked rather than the spec manager alone: it maps the old generic name
    `python` to the native kernel (`python3`), as papermill and JupyterLab do when they start one.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=name)
    try:
        manager.kernel_spec  # noqa: B018  (raises NoSuchKernel)
    except NoSuchKernel as exc:
        available = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise WorkbenchError(
            f"Kernel {name!r} is not installed (available: {available}).",
            "Install it (e.g. python -m ipykernel install --user) or pass --kernel.",
        ) from exc
    return str(manager.kernel_name)


def notebook_language(nb: Any) -> str | None:
    """The notebook's language as papermill reads it (language_info, else kernelspec); papermill's
    translators are keyed by its exact spelling (`python`, `R`)."""
    metadata = nb.metadata
    language = (metadata.get("language_info") or {}).get("name") or (metadata.get("kernelspec") or {}).get("language")
    return str(language) if language else None


def resolve_kernel(nb: Any, kernel_name: str | None, label: str) -> tuple[str, str]:
    """(kernel, language) to execute `nb` with.

    A notebook without a kernelspec (what `nbformat.v4.new_notebook()` writes) runs on the default
    Python kernel, as nbclient and `jupyter nbconvert --execute` do, unless its language is
    another one: then on an installed kernel of that language, or it is refused.
    """
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

    language = notebook_language(nb)
    name = kernel_name or (nb.metadata.get("kernelspec") or {}).get("name")
    if not name and language is not None and language.lower() != "python":
        name = _kernel_for_language(language, label)
    kernel = check_kernel(name or NATIVE_KERNEL_NAME)
    if language is None:
        language = str(KernelSpecManager().get_kernel_spec(kernel).language or "python")
    return kernel, language


def _kernel_for_language(language: str, label: str) -> str:
    """The first installed kernel (by name) for `language`; a one-line error when there is none."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().get_all_specs()
    wanted = language.lower()
    matching = sorted(name for name, info in specs.items() if str(info["spec"].get("language", "")).lower() == wanted)
    if not matching:
        available = ", ".join(sorted(specs)) or "none"
        raise WorkbenchError(
            f"{label} names no kernel and no {language} kernel is installed (available: {available}).",
            f"Install a {language} kernel, or pass --kernel NAME.",
        )
    return matching[0]


def execution_metadata(nb: Any, kernel: str, language: str) -> dict[str, Any] | None:
    """Kernelspec and language_info to fill in for execution when the notebook lacks them (else None)."""
    kernelspec = nb.metadata.get("kernelspec") or {}
    if kernelspec.get("name") and notebook_language(nb):
        return None
    from jupyter_client.kernelspec import KernelSpecManager

    display = KernelSpecManager().get_kernel_spec(kernel).display_name or kernel
    return {"kernelspec": {"name": kernelspec.get("name") or kernel, "display_name": kernelspec.get("display_name")
                           or display, "language": kernelspec.get("language") or language},
            "language_info": {**(nb.metadata.get("language_info") or {}), "name": language}}  # fmt: skip
