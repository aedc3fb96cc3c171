"""What a refused command line gets beside typer's words: the way to what the user most likely meant (a file named
like an option, a command that lives in a group, an option given before its command). typer says `No such
option: -c` and no more."""

from __future__ import annotations

import os
import re


def refusal(e: Exception) -> str:
    """The line for typer's usage error `e`: typer's words, the options it suggests only the close ones
    (close_options), then the hint (usage_hint)."""
    own = _own_output(e)
    if own is not None:  # this command's own, not the other commands that call theirs so
        e.possibilities = []
        return e.format_message().replace("\n", " ") + f" (did you mean {own}?)" + _dash_file(e)
    if type(e).__name__ == "NoSuchOption" and getattr(e, "possibilities", None):
        e.possibilities = close_options(e.option_name, e.possibilities)
    return e.format_message().replace("\n", " ") + usage_hint(e)


def _own_output(e: Exception) -> str | None:
    """For an unknown option that is another command's output option (its -o: `generate --output`, `soundtrack
    --out-dir`), or a likely typo of one (`--ouput`), this command's own (`-o/--out-dir`); else None."""
    option, ctx, command = _unknown_to_a_command(e)
    if option is None:
        return None
    own = next((p for p in command.params if "-o" in getattr(p, "opts", ())), None)
    outputs = {name for _, other in _leaves(ctx.find_root().command, []) for p in getattr(other, "params", ())
               if "-o" in getattr(p, "opts", ()) for name in p.opts if name.startswith("--")}
    if own is None or not close_options(option, sorted(outputs)):
        return None
    return "/".join(sorted(own.opts, key=len))


def _unknown_to_a_command(e: Exception) -> tuple:
    """For typer's "no such option" given to a command (not a group): (the option, the context, the command); else
    (None, None, None)."""
    option, ctx = getattr(e, "option_name", None), getattr(e, "ctx", None)
    command = getattr(ctx, "command", None)
    if type(e).__name__ != "NoSuchOption" or not option or command is None or getattr(command, "commands", None):
        return None, None, None
    return option, ctx, command


def _distance(a: str, b: str) -> int:
    """The edit distance (Levenshtein) of two names."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def close_options(given: str, options: list[str]) -> list[str]:
    """The options of `options` (click's suggestions for the unknown option `given`) that are a likely typo of it,
    by their names without the dashes: at most 2 edits apart (`--outpt` → `--output`), alike by difflib's ratio
    (≥ 0.75, or ≥ 0.6 where they begin alike: their first 2 letters), or one the start of the other (`--out` →
    `--output`); of those, the fewest edits apart, then the most alike (`--seeds` → `--seed`, not `--steps`).
    click's own cut-off (0.6, on the names with their dashes, which match) suggested `--loudness` for `--guidance`,
    which leads nowhere."""
    import difflib

    def close(a: str, b: str) -> bool:
        shorter, longer = sorted((a, b), key=len)
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        return (_distance(a, b) <= 2 or ratio >= 0.75 or (ratio >= 0.6 and a[:2] == b[:2])
                or (len(shorter) >= 3 and longer.startswith(shorter)))

    def apart(option: str) -> tuple[int, float]:  # fewest edits, then most alike
        return _distance(bare, option.lstrip("-")), -difflib.SequenceMatcher(None, bare, option.lstrip("-")).ratio()

    bare = given.lstrip("-")
    likely = [option for option in options if close(bare, option.lstrip("-"))]
    nearest = min(map(apart, likely), default=None)
    return [option for option in likely if apart(option) == nearest]


def usage_hint(e: Exception) -> str:
    """The hint for typer's usage error `e` (" (to use a file named …)", " Did you mean …?"), or nothing."""
    return _dash_file(e) + _command_elsewhere(e) + _option_before_command(e) + _option_of_others(e)


def _dash_file(e: Exception) -> str:
    """For an unknown option that is the name of a file in the current folder (`mmgen soundtrack -clip.mp4`, read as
    the options -c -l …): how to give that file; else nothing."""
    from mmgen.cli.app import arguments

    option = getattr(e, "option_name", None)
    if type(e).__name__ != "NoSuchOption" or not option:
        return ""
    arguments_ = arguments.get()
    given = arguments_[: arguments_.index("--")] if "--" in arguments_ else arguments_
    named = next((arg for arg in given if arg.startswith("-") and len(arg) > 1 and os.path.lexists(arg)
                  and (arg.startswith(option) or (not option.startswith("--") and option[1:] in arg))), None)
    return f" (to use a file named {named}, write ./{named}, or put -- before it and the options before the --)" \
        if named else ""


def _command_elsewhere(e: Exception) -> str:
    """For an unknown command: the group that has one of that name (`mmgen list` → `mmgen models list`), or for
    `mmgen adapters`, where adapters are kept; else nothing. (typer says `No such command 'NAME'.` and no more.)"""
    said = re.match(r"No such command '([^']+)'\.", getattr(e, "message", "") or "")
    group = getattr(getattr(e, "ctx", None), "command", None)
    if said is None or group is None:
        return ""
    name = said[1]
    for group_name, sub in getattr(group, "commands", {}).items():
        if name in (getattr(sub, "commands", None) or {}):
            return f" Did you mean `{e.ctx.command_path} {group_name} {name}`?"  # in typer's words for a typo
    if name in ("adapter", "adapters"):
        return (" LoRA adapters are kept with the models: `mmgen models list` lists them, `mmgen models import FILE` "
                "registers one, and `models info`, `verify` and `rm` take NAME --adapter.")
    return ""


def _option_before_command(e: Exception) -> str:
    """For an unknown option given before the command (`mmgen --adapter style generate`), when it is an option of
    the command named after it — else of any command: that options go after the command; else nothing."""
    from mmgen.cli.app import arguments

    option, group = getattr(e, "option_name", None), getattr(getattr(e, "ctx", None), "command", None)
    if type(e).__name__ != "NoSuchOption" or not option or not getattr(group, "commands", None):
        return ""
    argv, path, command = arguments.get(), [e.ctx.command_path], group  # (--adapter=style, -n3: given as one)
    given = next((i for i, arg in enumerate(argv) if arg.startswith(option)), len(argv))
    for arg in argv[given + 1:]:
        if arg in (getattr(command, "commands", None) or {}):
            path, command = [*path, arg], command.commands[arg]
    if len(path) > 1 and _takes(command, option):
        return f" (options go after the command: {' '.join(path)} {option} …)"
    takers = [" ".join(names) for names, command in _leaves(group, [e.ctx.command_path]) if _takes(command, option)]
    return f" (options go after the command: {option} is an option of {', '.join(takers)})" if takers else ""


def _option_of_others(e: Exception) -> str:
    """For an unknown option of a command (not a group: _option_before_command's), the other commands that take
    it (`mmgen generate --guidance 3` → ` (an option of animate, soundtrack)`); else nothing."""
    option, ctx, _ = _unknown_to_a_command(e)
    if option is None:
        return ""
    takers = [" ".join(names) for names, other in _leaves(ctx.find_root().command, []) if _takes(other, option)]
    return f" (an option of {', '.join(takers)})" if takers else ""


def _takes(command: object, option: str) -> bool:
    return any(option in (*p.opts, *p.secondary_opts) for p in getattr(command, "params", ())
               if getattr(p, "param_type_name", None) == "option")


def _leaves(command: object, path: list[str]) -> list[tuple[list[str], object]]:
    """Every command under a group, with its path of names (`models list`)."""
    commands = getattr(command, "commands", None)
    if not commands:
        return [(path, command)]
    return [leaf for name, sub in sorted(commands.items()) for leaf in _leaves(sub, [*path, name])]
