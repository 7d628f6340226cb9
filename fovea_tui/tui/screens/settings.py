"""Every configuration key in a form: validated, diffed, confirmed, saved with tomli-w."""

from __future__ import annotations

import difflib
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, Switch

from fovea_tui import masking
from fovea_tui.config import SECTIONS, Settings, render_toml, save_settings, settings_from_dict, user_config_path
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops.alerting import run_test
from fovea_tui.engine.ops.notify import delivery_line
from fovea_tui.errors import ConfigError, FoveaError
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.confirm import ConfirmDialog
from fovea_tui.tui.widgets.schedule_panel import SchedulePanel

CHOICES = {"database.mode": ("docker", "direct")}
HINTS = {
    "install.compose_project": "label com.docker.compose.project of the stack",
    "install.env_file": "the install's .env (beside the compose file)",
    "database.mode": "docker: tools run inside the compose service; direct: on this host against url",
    "database.url": "direct mode; empty means DATABASE_URL from the env file",
    "backups.offsite": "s3://bucket/prefix/ or a directory (made 0700 by the first backup); empty: none",
    "retention.timezone": "IANA zone for bucket boundaries; empty: this host's zone",
    "volume.path": "the host path behind STORAGE_PATH",
    "volume.target": "s3://bucket/prefix/ or a directory (made 0700 by the first sync); empty: none",
    "volume.delete": "mirror deletions, behind max_delete_percent",
    "volume.full_listing_hours": "list the S3 target at least this often; between, trust the last sync's snapshot (0: always list)",
    "s3.endpoint_url": "MinIO, Ceph, R2…; empty means AWS. Credentials: the AWS chain, never here",
    "stack.migrate_command": "words, shell-quoted",
    "stack.database_clients": "services besides the backend that use the database: only they can fail a restore's start",
    "stack.stop_timeout_s": "seconds from SIGTERM to SIGKILL for a service without its own stop_grace_period",
    "notify.webhooks": "URLs that get the JSON body of a failed run, separated by spaces (shown hidden)",
    "notify.urls": "Apprise URLs (mailtos://, ntfys://, slack://, tgram://, json://…), separated by spaces (shown hidden)",
    "notify.on_success": "also send a message when the nightly run went well",
    "monitor.ping_url": "dead-man's switch for the nightly run: <url>/start, <url>, <url>/fail (shown hidden)",
    "monitor.backup_url": "a check of its own for backups; empty: ping_url when run alone",
    "monitor.sync_url": "a check of its own for the volume sync; empty: ping_url when run alone",
    "restore.keep_renamed_hours": "keep the database a restore renamed aside this long after its safety dump is verified (0: drop it then)",
    "monitor.drill_url": "a check for drills (period: drill.interval_days); empty: ping_url",
    "encryption.recipients": "public keys (age1…, or ssh keys in quotes), separated by spaces; empty: off-site copies unencrypted",
    "encryption.identity_file": "the private key that opens the copies (verify, drill, restore from off-site)",
}
# Keys whose value is a credential: typed into hidden fields, like a password.
SECRET_KEYS = {"database.url", "notify.webhooks", "notify.urls", "monitor.ping_url", "monitor.backup_url",
               "monitor.sync_url", "monitor.drill_url"}


class NotifyTested(Message):
    """The test message went out: the report as a dict, or why nothing was sent."""

    def __init__(self, report: dict[str, Any] | None, error: str) -> None:
        super().__init__()
        self.report = report
        self.error = error


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "--")


def key_of(widget_id: str) -> str:
    return widget_id[2:].replace("--", ".")


def unified_diff(before: str, after: str, path: Path) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"{path} (now)", tofile=f"{path} (after saving)"))


class SettingsScreen(FoveaScreen):
    TITLE = "Settings"
    AUTO_FOCUS = None  # keys navigate until the operator tabs or clicks into a field
    BINDINGS = [
        Binding("escape", "leave_field", "Back", show=False),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+z", "revert", "Revert"),
        Binding("ctrl+t", "notify_test", "Test alerts", show=False),  # the button says so; the footer is full
    ]
    DEFAULT_CSS = """
    SettingsScreen #where { height: auto; padding: 0 1; color: $text-muted; }
    SettingsScreen #form { height: 1fr; padding: 0 1; }
    SettingsScreen .section { height: auto; }
    SettingsScreen .row { height: auto; }
    SettingsScreen .row > Label.key { width: 26; text-style: bold; }
    SettingsScreen .row { margin-top: 1; }
    SettingsScreen .row > Switch { height: 1; border: none; padding: 0; }
    SettingsScreen .row > Input, SettingsScreen .row > Select { width: 1fr; }
    SettingsScreen .row > Switch { width: auto; }
    SettingsScreen .hint { padding-left: 26; color: $text-muted; height: auto; }
    SettingsScreen .error { padding-left: 26; color: $error; text-style: bold; height: auto; display: none; }
    SettingsScreen .error.-shown { display: block; }
    SettingsScreen #buttons { height: auto; padding: 0 1; align-horizontal: right; }
    SettingsScreen #notify-result { height: auto; max-height: 8; padding: 0 1; display: none; }
    SettingsScreen #notify-result.-shown { display: block; }
    SettingsScreen #notify-result.-failed { color: $error; }
    SettingsScreen #buttons Button { margin-left: 2; }
    SettingsScreen.-narrow .row > Label.key { width: 20; }
    SettingsScreen.-narrow .hint, SettingsScreen.-narrow .error { padding-left: 2; }
    """

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("", id="where")
        with VerticalScroll(id="form"):
            for section, cls in SECTIONS.items():
                hints = get_type_hints(cls)
                with Vertical(classes="section box") as box:
                    box.border_title = escape(f"[{section}]")
                    for f in fields(cls):
                        key = f"{section}.{f.name}"
                        yield from self._row(key, hints[f.name])
                    if section == "encryption":
                        yield Button("Generate a key…", id="keygen", compact=True)
            yield SchedulePanel()
        yield Static("", id="notify-result")
        with Horizontal(id="buttons"):
            yield Button("Test alerts (ctrl+t)", id="notify-test")
            yield Button("Revert (ctrl+z)", id="revert")
            yield Button("Save… (ctrl+s)", id="save", variant="primary")
        yield Footer(compact=True)

    def _row(self, key: str, kind: Any) -> ComposeResult:
        fid = field_id(key)
        with Horizontal(classes="row"):
            yield Label(key.split(".", 1)[1], classes="key")
            if kind is bool:
                yield Switch(id=fid, animate=False)
            elif key in CHOICES:
                yield Select([(c, c) for c in CHOICES[key]], id=fid, allow_blank=False, compact=True)
            elif kind is int:
                yield Input(id=fid, type="integer", compact=True)
            else:
                yield Input(id=fid, password=key in SECRET_KEYS, compact=True)
        if key in HINTS:
            yield Static(HINTS[key], classes="hint")
        yield Static("", classes="error", id=f"err-{fid}")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self.app.cursor_blink
        self.load_form(self.app.settings)
        self.app.settings_changed.subscribe(self, self.load_form)

    def target(self) -> Path:
        return Path(self.app.settings.source or user_config_path())

    def load_form(self, settings: Settings) -> None:
        where = (f"editing {settings.source}" if settings.source else
                 f"no config file yet: saving creates {user_config_path()}")
        self.query_one("#where", Static).update(where)
        data = settings.to_toml_dict()
        for section, values in data.items():
            for name, value in values.items():
                widget = self._field(section + "." + name)
                if isinstance(widget, Switch):
                    widget.value = bool(value)
                elif isinstance(widget, Select):
                    widget.value = value
                elif isinstance(value, list):
                    widget.value = shlex.join(value)
                else:
                    widget.value = str(value)
        self.clear_errors()

    def _field(self, key: str) -> Input | Select[Any] | Switch:
        """The form widget of a config key (compose makes one of these three for each)."""
        widget = self.query_one(f"#{field_id(key)}")
        assert isinstance(widget, (Input, Select, Switch))
        return widget

    def form_dict(self) -> dict[str, dict[str, Any]]:
        """The form as TOML data; raises ConfigError naming the key for unparsable fields."""
        data: dict[str, dict[str, Any]] = {}
        for section, cls in SECTIONS.items():
            hints = get_type_hints(cls)
            values: dict[str, Any] = {}
            for f in fields(cls):
                key = f"{section}.{f.name}"
                widget = self._field(key)
                kind = hints[f.name]
                if isinstance(widget, Switch):
                    values[f.name] = widget.value
                elif isinstance(widget, Select):
                    values[f.name] = widget.value
                elif kind is int:
                    text = widget.value.strip()
                    try:
                        values[f.name] = int(text)
                    except ValueError:
                        raise ConfigError(f"config key {key} must be a whole number", key=key) from None
                elif kind is str:
                    values[f.name] = widget.value.strip()
                else:
                    try:
                        values[f.name] = shlex.split(widget.value)
                    except ValueError as exc:
                        raise ConfigError(f"config key {key}: {exc}", key=key) from None
            data[section] = values
        return data

    def clear_errors(self) -> None:
        for error in self.query(".error").results(Static):
            error.remove_class("-shown")
            error.update("")

    def show_error(self, exc: FoveaError) -> None:
        key = getattr(exc, "key", None) or ""
        message = masking.redact(str(exc))
        try:
            error = self.query_one(f"#err-{field_id(key)}", Static)
        except Exception:  # noqa: BLE001 - a key without a field: say it in a notification only
            error = None
        if error is not None:
            error.update(message)
            error.add_class("-shown")
            self.query_one(f"#{field_id(key)}").focus()
            error.scroll_visible()
        self.notify(message, title="Not saved", severity="error")

    def action_leave_field(self) -> None:
        """Escape in a field leaves the field (so keys navigate again); else goes back."""
        if isinstance(self.focused, (Input, Select, Switch)):
            self.set_focus(None)
        else:
            self.confirm_leave(self.app.action_go_back)

    def unsaved(self) -> bool:
        """The form says something the saved settings do not (an invalid value counts)."""
        try:
            return render_toml(settings_from_dict(self.form_dict())) != render_toml(self.app.settings)
        except FoveaError:
            return True

    def confirm_leave(self, then) -> bool:
        """Leaving with unsaved edits asks first (the app calls this before switching screens)."""
        if not self.unsaved():
            then()
            return False

        def done(discard: bool | None) -> None:
            if discard:
                self.load_form(self.app.settings)
                then()
        self.app.push_screen(ConfirmDialog("The form has changes that are not saved. Leave and discard them?",
                                           confirm_label="Discard", cancel_label="Keep editing",
                                           title="Unsaved settings"), done)
        return True

    def action_revert(self) -> None:
        self.load_form(self.app.settings)
        self.notify("Form reset to the saved settings.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "keygen":
            self.action_keygen()
        elif event.button.id == "revert":
            self.action_revert()
        elif event.button.id == "notify-test":
            self.action_notify_test()

    def action_notify_test(self) -> None:
        """`fovea-tui notify test` with what the form holds now, saved or not: the way to
        check a channel before relying on it."""
        self.clear_errors()
        try:
            settings = settings_from_dict(self.form_dict(), source=self.app.settings.source)
        except FoveaError as exc:
            self.show_error(exc)
            return
        result = self.query_one("#notify-result", Static)
        result.update("Sending a test message to every notification URL and monitor ping…")
        result.remove_class("-failed")
        result.add_class("-shown")
        self._send_test(settings)

    @work(thread=True, exclusive=True, group="notify-test", exit_on_error=False)
    def _send_test(self, settings: Settings) -> None:
        try:
            report = run_test(settings)
        except FoveaError as exc:
            self.post_message(NotifyTested(None, masking.redact(str(exc))))
            return
        self.post_message(NotifyTested(report.as_dict(), ""))

    def on_notify_tested(self, message: NotifyTested) -> None:
        result = self.query_one("#notify-result", Static)
        if message.report is None:
            result.update(Text(message.error))
            result.add_class("-failed")
            self.notify(message.error, title="Test alerts", severity="error")
            return
        deliveries = message.report["deliveries"]
        failed = sum(1 for d in deliveries if not d["ok"])
        head = (f"Test alerts: all {len(deliveries)} delivered" if not failed
                else f"Test alerts: {failed} of {len(deliveries)} FAILED")
        result.update(Text(masking.redact("\n".join([head, *(delivery_line(d) for d in deliveries)]))))
        result.set_class(bool(failed), "-failed")
        self.notify(head, title="Test alerts", severity="error" if failed else "information")

    def action_keygen(self) -> None:
        """A new age identity: its recipient joins the form's recipients and it becomes the
        identity_file when none is set; nothing is saved until ctrl+s."""
        from fovea_tui.config import default_identity_path
        from fovea_tui.engine.backups.age_keys import keygen

        try:
            made = keygen(default_identity_path())
        except (FoveaError, OSError) as exc:
            self.notify(masking.redact(str(exc)), title="No key made", severity="error")
            return
        recipients = self.query_one(f"#{field_id('encryption.recipients')}", Input)
        recipients.value = (recipients.value + " " + made.recipient).strip()
        identity = self.query_one(f"#{field_id('encryption.identity_file')}", Input)
        if not identity.value.strip():
            identity.value = str(made.path)
        self.notify(f"Key written to {made.path} (0600). " + made.advice[1] + " Save with ctrl+s.",
                    title="Encryption key", timeout=15)

    def action_save(self) -> None:
        self.clear_errors()
        old: Settings = self.app.settings
        try:
            new = settings_from_dict(self.form_dict(), source=old.source)
        except FoveaError as exc:
            self.show_error(exc)
            return
        if new.database.url:
            try:
                from fovea_tui.envfile import DatabaseURL

                DatabaseURL.parse(new.database.url, source="database.url")  # registers its password
            except FoveaError as exc:
                self.show_error(ConfigError(str(exc), key="database.url"))
                return
        target = self.target()
        before = render_toml(old) if old.source else ""
        diff = unified_diff(before, render_toml(new), target)
        if not diff and old.source:
            self.notify("Nothing changed.")
            return

        def confirmed(ok: bool | None) -> None:
            if not ok:
                return
            try:
                path = save_settings(new, target)
            except (FoveaError, OSError) as exc:
                self.notify(masking.redact(str(exc)), title="Not saved", severity="error")
                return
            audit.settings_saved(old, new, path)
            self.app.apply_settings(new)
            self.notify(f"Saved to {path}", title="Settings")

        self.app.push_screen(ConfirmDialog(f"Write these changes to {target}?", masking.redact(diff),
                                           confirm_label="Save", title="Save settings"), confirmed)
