"""The recovery wizard: `fovea-tui recover` for an operator at the terminal of a fresh host.

Where the copy is (URL, the age identity, an S3 endpoint), the backups found there, then
fetch, decrypt, verify, config, env file and videos in a thread worker (`engine.drill.recover`),
and the guided restore screen to finish, with its safety checks.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fovea_tui import masking
from fovea_tui.config import user_config_path
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import FoveaError
from fovea_tui.tui.typed import FoveaAppAccess
from fovea_tui.tui.widgets.confirm import ConfirmDialog


class Listed(Message):
    def __init__(self, backups: list | None, error: str = "") -> None:
        super().__init__()
        self.backups, self.error = backups, error


class Step(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class Prepared(Message):
    def __init__(self, prepared=None, error: str = "") -> None:
        super().__init__()
        self.prepared, self.error = prepared, error


class RecoverScreen(FoveaAppAccess, ModalScreen[None]):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Fill in where the copy is, list, recover; then the guided restore."""

    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    RecoverScreen { align: center middle; }
    RecoverScreen > Vertical {
        width: 90%; max-width: 110; height: auto; max-height: 95%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    RecoverScreen VerticalScroll { height: auto; max-height: 32; }
    RecoverScreen Label.key { padding-top: 1; text-style: bold; }
    RecoverScreen .found { color: $text-muted; height: auto; }
    RecoverScreen #rec-buttons { height: auto; align-horizontal: right; padding-top: 1; }
    RecoverScreen #rec-buttons Button { margin-left: 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.cancel = CancelToken()
        self.backups: list = []
        self.prepared = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Recover this install from an off-site copy"
            yield Static("For a new host with nothing but fovea-tui: fetch, decrypt and verify the newest verified "
                         "backup, write this host's config to " + escape(str(user_config_path())) + ", install the "
                         "env copy (0600), pull the video copy, then run the guided restore.", classes="found")
            with VerticalScroll():
                yield Label("off-site copy (s3://bucket/prefix/ or a directory)", classes="key")
                yield Input(placeholder="s3://my-bucket/fovea/", id="rec-url")
                yield Label("age identity (needed when the copies are encrypted)", classes="key")
                yield Input(placeholder="~/fovea-identity.txt", id="rec-identity")
                yield Label("S3 endpoint (MinIO, R2…; empty for AWS)", classes="key")
                yield Input(id="rec-endpoint")
                yield Label("backups directory on this host", classes="key")
                yield Input(self.app.settings.backups.dir, id="rec-dir")
                yield Static("", id="rec-list", classes="found")
                yield Static("", id="rec-log", classes="found")
            with Horizontal(id="rec-buttons"):
                yield Button("Close (escape)", id="rec-close")
                yield Button("List backups", id="rec-listing")
                yield Button("Recover…", id="rec-go", variant="primary", disabled=True)
                yield Button("Open the guided restore", id="rec-restore", variant="success", disabled=True)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self.app.cursor_blink

    def _values(self) -> tuple[str, str, str]:
        return (self.query_one("#rec-url", Input).value.strip(), self.query_one("#rec-identity", Input).value.strip(),
                self.query_one("#rec-endpoint", Input).value.strip())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        handlers = {"rec-close": self.action_close, "rec-listing": self.action_list, "rec-go": self.action_recover,
                    "rec-restore": self.action_restore}
        handler = handlers.get(event.button.id or "")
        if handler is not None:
            handler()

    def action_close(self) -> None:
        self.cancel.cancel("closed")
        self.dismiss(None)

    # -- listing
    def action_list(self) -> None:
        self.query_one("#rec-list", Static).update("listing…")
        url, _identity, endpoint = self._values()
        self.list_worker(url, endpoint)

    @work(thread=True, exclusive=True, group="recover-list", exit_on_error=False)
    def list_worker(self, url: str, endpoint: str) -> None:
        from fovea_tui.engine.drill.recover import list_backups

        try:
            self.post_message(Listed(list_backups(url, endpoint_url=endpoint)))
        except FoveaError as exc:
            self.post_message(Listed(None, masking.redact(str(exc))))

    def on_listed(self, message: Listed) -> None:
        target = self.query_one("#rec-list", Static)
        if message.backups is None:
            target.update(f"[$error]{escape(message.error)}[/]")
            return
        self.backups = message.backups
        if not self.backups:
            target.update("no backup of a Fovea install there")
            return
        lines = []
        for i, b in enumerate(self.backups[:12]):
            mark = "→" if i == 0 else " "
            state = "verified" if b.verified else "UNVERIFIED"
            lines.append(f"{mark} {escape(b.name)}  {state}{'  encrypted' if b.encrypted else ''}  {escape(b.detail)}")
        target.update("\n".join(lines))
        self.query_one("#rec-go", Button).disabled = not self.backups[0].verified

    # -- recovering
    def action_recover(self) -> None:
        if not self.backups:
            return
        chosen = self.backups[0]
        url, identity, endpoint = self._values()
        given = {"backups": {"dir": self.query_one("#rec-dir", Input).value.strip()}}

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.query_one("#rec-go", Button).disabled = True
                self.recover_worker(url, identity, endpoint, given)

        self.app.push_screen(ConfirmDialog(
            f"Recover this host from {chosen.name}?",
            f"Writes {user_config_path()}, installs the env copy as the install's env file (never over a "
            "different one), pulls the video copy; the guided restore comes next, with its own confirmation.",
            confirm_label="Recover", title="Recover"), confirmed)

    @work(thread=True, exclusive=True, group="recover-run", exit_on_error=False)
    def recover_worker(self, url: str, identity: str, endpoint: str, given: dict) -> None:
        from fovea_tui.engine.drill.recover import prepare

        try:
            def on_step(text: str) -> None:
                self.post_message(Step(text))

            prepared = prepare(url, identity=identity or None, endpoint_url=endpoint, given=given, cancel=self.cancel,
                               on_step=on_step)
            self.post_message(Prepared(prepared))
        except FoveaError as exc:
            self.post_message(Prepared(None, masking.redact(str(exc))))

    def on_step(self, message: Step) -> None:
        log = self.query_one("#rec-log", Static)
        log.update(f"{log.render()}\n{escape(masking.redact(message.text))}".strip())

    def on_prepared(self, message: Prepared) -> None:
        log = self.query_one("#rec-log", Static)
        if message.prepared is None:
            log.update(f"{log.render()}\n[$error]{escape(message.error)}[/]")
            self.query_one("#rec-go", Button).disabled = False
            return
        p = self.prepared = message.prepared
        lines = [f"config written: {p.config_path}", f"dump verified: {p.dump_path.name}",
                 f"env file {p.settings.install.env_file}: {p.env_installed}"]
        if p.adjustments:
            lines.append("adjust by hand before the backend starts:")
            lines += [f"  • {note}" for note in p.adjustments]
        lines += [f"warning: {w}" for w in p.warnings]
        if p.target_empty:
            lines.append("the database to restore into is empty: nothing here can be lost")
        log.update(escape("\n".join(lines)))
        self.app.apply_settings(p.settings)
        self.query_one("#rec-restore", Button).disabled = False

    def action_restore(self) -> None:
        if self.prepared is None:
            return
        self.notify(f"Choose {self.prepared.dump_path.name} (local, verified) in the restore screen.",
                    title="Recover")
        app = self.app
        self.dismiss(None)
        app.call_after_refresh(app.action_goto, "restore")  # once this modal is gone


__all__ = ["RecoverScreen"]
