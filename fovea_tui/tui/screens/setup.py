"""First run without a config file: find the install and offer what was found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from fovea_tui.config import Settings, render_toml, save_settings, settings_from_dict, user_config_path
from fovea_tui.engine.infra import audit
from fovea_tui.errors import FoveaError
from fovea_tui.tui.typed import FoveaAppAccess
from fovea_tui.tui.widgets.confirm import ConfirmDialog

PROJECT_LABEL = "com.docker.compose.project"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
SERVICE_LABEL = "com.docker.compose.service"
DEFAULT_ENV = Path("/opt/fovea/.env")


@dataclass
class Discovery:
    engine: str = ""                                       # "" when Docker answered, else why not
    projects: dict[str, str] = field(default_factory=dict)  # project -> working dir
    env_files: list[str] = field(default_factory=list)
    volume_paths: list[str] = field(default_factory=list)
    has_postgres: dict[str, bool] = field(default_factory=dict)


def discover(backend_service: str = "backend") -> Discovery:
    """Look at the Docker engine (if one answers) and the usual places. Never raises."""
    found = Discovery()
    try:
        from fovea_tui.engine.infra.stack import connect_docker

        client = connect_docker(timeout=5)
        containers = client.containers.list(all=True, filters={"label": PROJECT_LABEL})
    except FoveaError as exc:
        found.engine = str(exc)
        containers = []
    except Exception as exc:  # noqa: BLE001 - discovery is a convenience; say why and go on
        found.engine = f"{type(exc).__name__}: {exc}"
        containers = []
    for c in containers:
        labels = c.labels or {}
        project = labels.get(PROJECT_LABEL)
        if not project:
            continue
        found.projects.setdefault(project, labels.get(WORKDIR_LABEL, ""))
        service = labels.get(SERVICE_LABEL, "")
        if service == "postgres":
            found.has_postgres[project] = True
        if service == backend_service:
            for mount in c.attrs.get("Mounts") or []:
                if mount.get("Destination") == "/videos" and mount.get("Source"):
                    if mount["Source"] not in found.volume_paths:
                        found.volume_paths.append(mount["Source"])
    candidates = [Path(wd) / ".env" for wd in found.projects.values() if wd] + [DEFAULT_ENV]
    for path in candidates:
        if path.is_file() and str(path) not in found.env_files:
            found.env_files.append(str(path))
    # Fovea projects first: the ones with a postgres service, or named like it.
    found.projects = dict(sorted(found.projects.items(),
                                 key=lambda kv: (not found.has_postgres.get(kv[0]), "fovea" not in kv[0], kv[0])))
    return found


class Discovered(Message):
    def __init__(self, found: Discovery) -> None:
        super().__init__()
        self.found = found


class SetupScreen(FoveaAppAccess, ModalScreen[None]):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Offers what discovery found; saving writes a config file (after showing it)."""

    BINDINGS = [Binding("escape", "skip", "Skip")]
    DEFAULT_CSS = """
    SetupScreen { align: center middle; }
    SetupScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 95%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SetupScreen VerticalScroll { height: auto; max-height: 30; }
    SetupScreen Label.key { padding-top: 1; text-style: bold; }
    SetupScreen .found { color: $text-muted; height: auto; }
    SetupScreen #setup-buttons { height: auto; align-horizontal: right; padding-top: 1; }
    SetupScreen #setup-buttons Button { margin-left: 2; }
    """

    def compose(self) -> ComposeResult:
        s: Settings = self.app.settings
        with Vertical() as box:
            box.border_title = ("First run: where is the Fovea install?" if s.source is None
                                else "Find the install again")
            yield Static(f"{self._where()} Looking for the install… "
                         f"Saving writes {escape(str(self.target()))}.", id="setup-intro")
            with VerticalScroll():
                yield Label("compose project", classes="key")
                yield Input(s.install.compose_project, id="setup-project")
                yield Static("", id="found-project", classes="found")
                yield Label("env file", classes="key")
                yield Input(s.install.env_file, id="setup-env")
                yield Static("", id="found-env", classes="found")
                yield Label("video volume path", classes="key")
                yield Input(s.volume.path, id="setup-volume")
                yield Static("", id="found-volume", classes="found")
                yield Label("database mode", classes="key")
                yield Select([("docker", "docker"), ("direct", "direct")], value=s.database.mode,
                             id="setup-mode", allow_blank=False)
                yield Label("off-site copies", classes="key")
                yield Static("Encrypt them: generate an age key here (its public part goes into [encryption] "
                             "recipients; keep a copy of the key away from this host).", classes="found")
                yield Static("", id="setup-key", classes="found")
            with Horizontal(id="setup-buttons"):
                yield Button("Recover this install from an off-site copy…", id="setup-recover")
                yield Button("Generate an encryption key", id="setup-keygen")
                yield Button("Skip (escape)", id="setup-skip")
                yield Button("Save…", id="setup-save", variant="primary")

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = self.app.cursor_blink
        self.run_discovery()

    @work(thread=True, exclusive=True, group="discovery", exit_on_error=False)
    def run_discovery(self) -> None:
        self.post_message(Discovered(discover(self.app.settings.stack.backend_service)))

    def on_discovered(self, message: Discovered) -> None:
        found = message.found
        if found.projects:
            first = next(iter(found.projects))
            self.query_one("#setup-project", Input).value = first
            self.query_one("#found-project", Static).update("found: " + ", ".join(found.projects))
        else:
            why = f" ({found.engine})" if found.engine else ""
            self.query_one("#found-project", Static).update(f"no compose project found{escape(why)}")
            self.query_one("#setup-mode", Select).value = "direct" if found.engine else "docker"
        if found.env_files:
            self.query_one("#setup-env", Input).value = found.env_files[0]
            self.query_one("#found-env", Static).update("found: " + escape(", ".join(found.env_files)))
        else:
            self.query_one("#found-env", Static).update("no .env found beside a compose project or in /opt/fovea")
        if found.volume_paths:
            self.query_one("#setup-volume", Input).value = found.volume_paths[0]
            self.query_one("#found-volume", Static).update(
                "the backend's /videos mount: " + escape(", ".join(found.volume_paths)))
        else:
            self.query_one("#found-volume", Static).update("no backend container with a /videos mount found")
        self.query_one("#setup-intro", Static).update(
            f"{self._where()} This is what fovea-tui found; adjust and save to {escape(str(self.target()))}.")

    def _where(self) -> str:
        source = self.app.settings.source
        if source is None:
            return "No config file was found, so fovea-tui runs on defaults."
        return f"The settings come from {escape(str(source))}."

    def target(self) -> Path:
        """The loaded config file, or (first run) the user's config path."""
        return Path(self.app.settings.source or user_config_path())

    recipient: str = ""
    identity_file: str = ""

    def proposed(self) -> Settings:
        s: Settings = self.app.settings
        data = s.to_toml_dict()
        if self.recipient:
            data["encryption"] = {"recipients": [self.recipient], "identity_file": self.identity_file}
        data["install"]["compose_project"] = self.query_one("#setup-project", Input).value.strip()
        data["install"]["env_file"] = self.query_one("#setup-env", Input).value.strip()
        data["volume"]["path"] = self.query_one("#setup-volume", Input).value.strip()
        data["database"]["mode"] = self.query_one("#setup-mode", Select).value
        return settings_from_dict(data)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "setup-skip":
            self.action_skip()
        elif event.button.id == "setup-recover":
            from fovea_tui.tui.screens.recover import RecoverScreen

            self.dismiss(None)
            self.app.push_screen(RecoverScreen())
        elif event.button.id == "setup-keygen":
            self.action_keygen()
        elif event.button.id == "setup-save":
            self.action_save()

    def action_keygen(self) -> None:
        """A new age identity beside the user config; saved into [encryption] with the rest."""
        from fovea_tui.config import default_identity_path
        from fovea_tui.engine.backups.age_keys import keygen

        try:
            made = keygen(default_identity_path())
        except (FoveaError, OSError) as exc:
            self.notify(str(exc), title="No key made", severity="error")
            return
        self.recipient, self.identity_file = made.recipient, str(made.path)
        self.query_one("#setup-key", Static).update(escape(f"key written to {made.path} (0600); recipient "
                                                           f"{made.recipient}. " + " ".join(made.advice[1:2])))
        self.query_one("#setup-keygen", Button).disabled = True

    def action_skip(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        try:
            new = self.proposed()
        except FoveaError as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        target = self.target()
        text = render_toml(new)
        diff = "".join(f"+{line}\n" for line in text.splitlines())

        def confirmed(ok: bool | None) -> None:
            if not ok:
                return
            try:
                save_settings(new, target)
            except (FoveaError, OSError) as exc:
                self.notify(str(exc), title="Not saved", severity="error")
                return
            audit.settings_saved(None, new, target)
            self.app.apply_settings(new)
            self.notify(f"Saved to {target}", title="Setup")
            self.dismiss(None)

        self.app.push_screen(ConfirmDialog(f"{'Overwrite' if target.exists() else 'Create'} {target}?", diff, confirm_label="Save",
                                           title="Save settings"), confirmed)


__all__ = ["SetupScreen", "discover", "Discovery"]
