"""`fovea-tui keygen [--out FILE]`: a new age identity (0600) for `[encryption]`."""

from __future__ import annotations

from fovea_tui.cli.context import CliContext


def register(sub) -> None:
    from fovea_tui.cli.flags import add_json_flag

    parser = sub.add_parser(
        "keygen", help="create an age identity (0600) for [encryption] and print its recipient",
        description="Write a new age identity (private key, mode 0600; never over an existing file) and print "
                    "its recipient (the public key) for [encryption] recipients. Keep a copy of the identity "
                    "away from this host.")
    parser.add_argument("--out", metavar="FILE", help="where to write the identity "
                        "(default: age-identity.txt beside the user config)")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.config import default_identity_path
    from fovea_tui.engine.backups.age_keys import keygen

    result = keygen(args.out or default_identity_path())
    text = "\n".join([f"identity written to {result.path} (mode 0600)",
                      f"recipient: {result.recipient}", ""] + [f"- {line}" for line in result.advice])
    ctx.emit(result.as_dict(), text)
    return 0
