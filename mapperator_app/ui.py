"""The app's Gradio page: tabs for Generate, MaiMod, Timing, Models and Settings, and the job list.

Every event that does work has an ``api_name`` so ``gradio_client`` can drive the app the way the page
does. Heavy work never runs in an event handler: handlers submit it to the one :class:`~.worker.Worker`
and then follow the job, yielding progress, so the page stays responsive and jobs queue visibly.
"""
from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr
from gradio.i18n import I18nData

from . import access, forms, i18n
from .access import AccessKey
from .i18n import t
from .settings import Settings
from .worker import Job, Worker

TITLE = "Mapperator"
POLL_SECONDS = 0.25

CSS = """
html:not(.mapperator-native) .native-only { display: none !important; }
html.mapperator-native .browser-only { display: none !important; }
.mp-browse { min-width: 6em !important; max-width: 9em !important; align-self: end; }
.mp-status { padding: 8px 12px; border-radius: 8px; margin: 4px 0; }
.mp-bar { height: 10px; background: var(--neutral-200); border-radius: 5px; overflow: hidden; }
.mp-fill { height: 100%; background: var(--color-accent); transition: width 0.2s; }
.mp-stage { margin-top: 6px; font-size: 0.95em; }
.mp-error { background: #ffe3e3; color: #8a1111; border: 1px solid #f5a3a3; }
.mp-cancelled { background: #f1f1f1; color: #444; }
.mp-queued { background: #fff6d6; color: #5c4500; }
.mp-note { background: #eef5ff; color: #17365d; }
.mp-jobs { margin: 0; padding-left: 1.2em; font-size: 0.92em; }
.mp-idle { color: var(--body-text-color-subdued); }
#mm-table [role='gridcell'] { cursor: copy; }
.mp-caption { font-size: 0.9em; color: var(--body-text-color-subdued); }
"""

# The page's side of the native bridge. pywebview injects ``window.pywebview`` after the page loads and
# announces it with ``pywebviewready``; in a normal browser it never appears and uploads are offered.
HEAD = """
<script>
(function () {
  // the key in the address (see access.py) is now a cookie: keep it out of the history and of copied links
  const here = new URL(window.location.href);
  if (here.searchParams.has("key")) {
    here.searchParams.delete("key");
    window.history.replaceState(window.history.state, "", here.pathname + here.search + here.hash);
  }
  const api = () => (window.pywebview && window.pywebview.api) || null;
  const native = () => { const a = api(); return !!(a && a.pick_file); };
  function mark() {
    if (!native()) return false;
    document.documentElement.classList.add("mapperator-native");
    return true;
  }
  // pywebview may announce itself before or after this script runs, so also look for a while
  window.addEventListener("pywebviewready", mark);
  let looks = 0;
  const timer = setInterval(() => { if (mark() || ++looks > 120) clearInterval(timer); }, 250);
  window.mapperator = {
    native: native,
    async pickFile(kind, current) {
      if (!native()) return current;
      const path = await api().pick_file(kind, current || "");
      return path || current;
    },
    async pickFolder(current) {
      if (!native()) return current;
      const path = await api().pick_folder(current || "");
      return path || current;
    },
    async saveFile(name, current) {
      if (!native()) return current;
      const path = await api().save_file(name || "", current || "");
      return path || current;
    },
    async copy(text) {
      if (!text) return text;
      try { await navigator.clipboard.writeText(text); }
      catch (e) {
        const area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select();
        try { document.execCommand("copy"); } finally { area.remove(); }
      }
      return text;
    },
  };
})();
</script>
"""

# The preview player (static/player.js, plain JS; it never contains a closing script tag) mounts itself on
# `.mapperator-player` markup that :func:`mapperator_app.player.player_html` writes into gr.HTML outputs.
_STATIC = files("mapperator_app") / "static"
HEAD += "<script>" + (_STATIC / "player.js").read_text(encoding="utf-8") + "</script>\n"
CSS += (_STATIC / "player.css").read_text(encoding="utf-8")

UPLOAD_TYPES = {
    "audio": [".mp3", ".ogg", ".wav", ".flac", ".m4a", ".opus"],
    "beatmap": [".osu"],
    "image": [".jpg", ".jpeg", ".png"],
}


class WrittenFiles:
    """The files this run of the app wrote (generated maps, saved timing): only their folders may be opened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: set[Path] = set()

    def add(self, path: str | Path) -> None:
        with self._lock:
            self._files.add(Path(path).resolve())

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, (str, Path)) or not str(path).strip():
            return False
        with self._lock:
            return Path(path).expanduser().resolve() in self._files

    def folder_of(self, path: str | Path) -> Path | None:
        """The folder of a written file, or the folder itself when it holds one; else None."""
        if not str(path).strip():
            return None
        target = Path(path).expanduser().resolve()
        with self._lock:
            if target in self._files:
                return target.parent
            return target if any(f.parent == target for f in self._files) else None


def L(key: str) -> I18nData:
    """A catalogue text that the page shows in its language (Gradio's own i18n: labels, buttons, tabs)."""
    return I18nData(key)


class PageTexts(gr.I18n):
    """The catalogues as Gradio's ``i18n``: the page picks its texts by the browser's language.

    Gradio chooses the language once, in the page, from ``navigator.language``, and has no way to switch it
    later; so a language chosen in Settings is applied here instead, by giving every language that one
    catalogue (:meth:`apply`), and the page reloads itself. Gradio sends this same dict (not a copy) with
    every page it serves, so the change needs no restart.
    """

    ALIASES = {"pt": "pt-BR", "zh-TW": "zh-CN"}  # languages Gradio knows that we answer with a close one

    def __init__(self, setting: str = i18n.AUTO):
        super().__init__()
        self.apply(setting)

    def apply(self, setting: str) -> None:
        chosen = i18n.match(setting) if setting and setting != i18n.AUTO else None
        english = dict(i18n.catalogue(i18n.DEFAULT))
        merged = {}
        for code in [*i18n.LANGUAGES, *self.ALIASES]:
            source = chosen or self.ALIASES.get(code, code)
            merged[code] = {**english, **{k: v for k, v in i18n.catalogue(source).items() if v}}
        self.translations.clear()
        self.translations.update(merged)


@dataclass
class AppContext:
    worker: Worker
    settings: Settings
    log_file: str | None = None
    written: WrittenFiles = field(default_factory=WrittenFiles)
    page_loads: list[tuple[Callable, Any, dict[str, Any]]] = field(default_factory=list)
    texts: PageTexts | None = None

    def __post_init__(self) -> None:
        if self.texts is None:
            self.texts = PageTexts(self.settings.language)

    def lang(self, request: gr.Request | None) -> str:
        """The language to answer a page's request in: the chosen one, else the browser's, else the system's."""
        headers = getattr(request, "headers", None) or {}
        return i18n.resolve(self.settings.language, headers.get("accept-language"))


def on_page_load(ctx: AppContext, fn: Callable, outputs: Any, **kwargs: Any) -> None:
    """Fill ``outputs`` with ``fn()`` when a page opens (a tab's last values, a table). :func:`build_app`
    runs these one after another and then marks the page ``data-mapperator-ready`` on ``<html>``: from then
    on nothing the page loads overwrites what the user (or a test) types."""
    ctx.page_loads.append((fn, outputs, kwargs))


def theme() -> gr.themes.Base:
    # System fonts only: Gradio's default theme would fetch Google Fonts, an outbound call.
    return gr.themes.Soft(primary_hue="pink", secondary_hue="indigo",
                          font=["system-ui", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Consolas", "DejaVu Sans Mono", "monospace"])


def with_signature(fn: Callable, names: Sequence[str], request: bool = True) -> Callable:
    """Give ``fn(**values)`` a real signature, so the API (and gradio_client) names its parameters."""
    P = inspect.Parameter
    params = [P(n, P.POSITIONAL_OR_KEYWORD) for n in names]
    if request:
        params.append(P("request", P.POSITIONAL_OR_KEYWORD, annotation=gr.Request))

    def wrapper(*args, **kwargs):
        bound = inspect.Signature(params).bind(*args, **kwargs)
        values = dict(bound.arguments)
        req = values.pop("request", None)
        return fn(values, req) if request else fn(values)

    if inspect.isgeneratorfunction(fn):
        def gen_wrapper(*args, **kwargs):
            yield from wrapper(*args, **kwargs)

        target = gen_wrapper
    else:
        target = wrapper
    target.__signature__ = inspect.Signature(params)
    target.__annotations__ = {"request": gr.Request} if request else {}  # Gradio finds gr.Request by type hint
    target.__name__ = fn.__name__
    target.__doc__ = fn.__doc__
    return target


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def cancel_button(ctx: "AppContext", button: gr.Button, status: gr.components.Component, kind: str,
                  api_name: str, doc: str) -> None:
    """Wire a Cancel button: this page's jobs of ``kind`` (or, when it has none, everyone's) are cancelled."""
    from . import forms

    def cancel(request: gr.Request):
        jobs = ctx.worker.cancel_where(owner=session_of(request), kind=kind) or ctx.worker.cancel_where(kind=kind)
        lang = ctx.lang(request)
        return forms.note_html(t("progress.cancelling", lang) if jobs else t("progress.nothing_to_cancel", lang))

    cancel.__name__, cancel.__doc__ = api_name, doc
    button.click(cancel, None, status, api_name=api_name, concurrency_limit=None, queue=False)


def path_field(label: str | I18nData, kind: str, *, value: str = "", placeholder: str | I18nData = "",
               elem_id: str | None = None, info: str | I18nData | None = None, save_name: str = "") -> gr.Textbox:
    """A path textbox with a native Browse button (in the window) or an upload button (in a browser)."""
    with gr.Row(equal_height=True):
        box = gr.Textbox(label=label, value=value, placeholder=placeholder, elem_id=elem_id, info=info, scale=8,
                         max_lines=1)
        browse = gr.Button(L("common.browse"), elem_classes=["native-only", "mp-browse"], scale=0, size="sm",
                           elem_id=f"{elem_id}-browse" if elem_id else None)
        if kind == "folder":
            js = "(current) => window.mapperator.pickFolder(current)"
        elif kind == "save":
            js = f"(current) => window.mapperator.saveFile({save_name!r}, current)"
        else:
            js = f"(current) => window.mapperator.pickFile({kind!r}, current)"
        browse.click(None, box, box, js=js, api_visibility="private")
        if kind in UPLOAD_TYPES:
            upload = gr.UploadButton(L("common.upload"), file_types=UPLOAD_TYPES[kind], type="filepath", size="sm", scale=0,
                                     elem_classes=["browser-only", "mp-browse"],
                                     elem_id=f"{elem_id}-upload" if elem_id else None)
            upload.upload(lambda f: f or "", upload, box, api_visibility="private")
    return box


def follow(worker: Worker, job: Job, render: Callable[[Job, int], tuple], finish: Callable[[Job], tuple],
           heartbeat: float = 2.0) -> Iterator[tuple]:
    """Yield ``render(job, jobs_ahead)`` while the job waits or runs (when it changes, or every ``heartbeat``
    seconds), then ``finish(job)`` once it has ended."""
    last, last_time = None, 0.0
    while not job.done.wait(POLL_SECONDS):
        ahead = worker.position(job)
        key = (job.state, round(job.fraction, 3), job.stage, job.rate, ahead, int(job.elapsed))
        if key != last or time.monotonic() - last_time > heartbeat:
            last, last_time = key, time.monotonic()
            yield render(job, ahead)
    yield finish(job)


def build_app(ctx: AppContext) -> gr.Blocks:
    from .tabs import generate, maimod, models, settings_tab, timing

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(L("app.header"))  # "## Mapperator" and a line on what it does
            with gr.Column(scale=1, min_width=320):
                jobs = gr.HTML(forms.jobs_html([]), elem_id="jobs", label=L("app.jobs"))
        with gr.Tabs():
            with gr.Tab(L("tab.generate"), id="generate"):
                generate.build(ctx, demo)
            with gr.Tab(L("tab.maimod"), id="maimod"):
                maimod.build(ctx, demo)
            with gr.Tab(L("tab.timing"), id="timing"):
                timing.build(ctx, demo)
            with gr.Tab(L("tab.models"), id="models"):
                models.build(ctx, demo)
            with gr.Tab(L("tab.settings"), id="settings"):
                settings_tab.build(ctx, demo)

        def jobs_list(request: gr.Request):
            return forms.jobs_html(ctx.worker.active(), ctx.lang(request))

        ctx.page_loads.append((jobs_list, [jobs], {}))  # in the page's language before the first tick
        _chain_page_loads(ctx, demo)
        timer = gr.Timer(1.0)
        timer.tick(jobs_list, None, jobs, api_name="jobs", show_progress="hidden", concurrency_limit=None,
                   queue=False)
    return demo


READY_JS = "() => { document.documentElement.dataset.mapperatorReady = 'true'; }"


def _chain_page_loads(ctx: AppContext, demo: gr.Blocks) -> None:
    event = None
    for fn, outputs, kwargs in ctx.page_loads:
        kwargs = dict(kwargs, show_progress="hidden")
        event = demo.load(fn, None, outputs, **kwargs) if event is None else event.then(fn, None, outputs, **kwargs)
    if event is None:
        demo.load(None, None, None, js=READY_JS)
    else:
        event.then(None, None, None, js=READY_JS)  # .then: also after a failed load, so the page still counts


def launch_kwargs(key: AccessKey, texts: PageTexts | None = None) -> dict[str, Any]:
    """What every launch of the page passes to Gradio: local only, no share link, no outbound fetches, no
    static file workers on other ports, and every request through the access guard (:mod:`.access`)."""
    icon = _STATIC / "icon.png"
    return dict(server_name="127.0.0.1", share=False, inbrowser=False, quiet=True, ssr_mode=False, pwa=False,
                mcp_server=False, enable_monitoring=False, footer_links=["api"], theme=theme(), css=CSS, head=HEAD,
                favicon_path=str(icon) if icon.is_file() else None, max_file_size="1gb", num_workers=0,
                i18n=texts if texts is not None else PageTexts(), app_kwargs={"middleware": [access.middleware(key)]})
