"""`self.app` typed as the FoveaApp on any screen, modal or widget (posting's cast idiom), so
`self.app.settings` is checked by mypy instead of being an attribute of `App[Any]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from fovea_tui.tui.app import FoveaApp


class FoveaAppAccess:
    """Mix in first: `class HelpScreen(FoveaAppAccess, ModalScreen[None])`."""

    @property
    def app(self) -> FoveaApp:
        return cast("FoveaApp", super().app)  # type: ignore[misc]  # a mixin: Textual's node is next in the MRO
