"""Click commands of the agent side: ``avaluma agent`` (agent-1 worker) and ``avaluma send`` (agent-2 sender).

The ``avaluma`` group imports them only when they run (``LAZY_COMMANDS`` in :mod:`avaluma.core.cli`).
"""

from __future__ import annotations

import asyncio
import os
import sys

import click

from avaluma.core.errors import AvalumaError

#: LiveKit Agents' CLI modes that ``avaluma agent`` passes on.
AGENT_MODES = click.Choice(["dev", "start", "console", "download-files"])


def _fail(exc: AvalumaError) -> None:
    raise click.ClickException(exc.message)


@click.command("send")
@click.option("--wav", "wav", type=click.Path(dir_okay=False, allow_dash=True), help="16-bit WAV file, or - for stdin.")
@click.option("--raw", is_flag=True, help="Read raw int16 PCM from stdin instead of a WAV (with --sample-rate).")
@click.option("--sample-rate", type=int, default=24_000, show_default=True, help="Sample rate of --raw input.")
@click.option("--channels", type=click.IntRange(1, 2), default=1, show_default=True, help="Channels of --raw input.")
@click.option("--url", envvar="LIVEKIT_URL", required=True, help="LiveKit server URL [env LIVEKIT_URL].")
@click.option("--token", envvar="LIVEKIT_TOKEN", default=None, help="Access token for the sender [env LIVEKIT_TOKEN].")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", default=None, help="Mint a token with this key [env].")
@click.option("--api-secret", envvar="LIVEKIT_API_SECRET", default=None, help="... and this secret [env].")
@click.option("--room", default=None, help="Room to join (with --api-key/--api-secret).")
@click.option("--identity", default="avaluma-sender", show_default=True, help="Sender identity (minted tokens).")
@click.option("--avatar-identity", default="avaluma-avatar", show_default=True, help="Identity of the avatar.")
@click.option("--segment-seconds", type=float, default=None, help="Cut the audio into segments of this length.")
@click.option("--chunk-ms", type=click.IntRange(10, 1000), default=100, show_default=True)
def send_command(
    wav: str | None,
    raw: bool,
    sample_rate: int,
    channels: int,
    url: str,
    token: str | None,
    api_key: str | None,
    api_secret: str | None,
    room: str | None,
    identity: str,
    avatar_identity: str,
    segment_seconds: float | None,
    chunk_ms: int,
) -> None:
    """Stream audio to an avatar in a LiveKit room (agent-2), at real-time pace, on lk.audio_stream.

    \b
    avaluma send --wav hello.wav --url wss://lk.example.com --token "$TOKEN"
    avaluma send --wav - --room demo --api-key K --api-secret S < hello.wav
    ffmpeg -i talk.mp3 -f s16le -ac 1 -ar 24000 - | avaluma send --raw --room demo
    """
    from avaluma.agent import sender

    if (wav is None) == (not raw):
        raise click.UsageError("give exactly one input: --wav FILE|- or --raw (PCM on stdin)")
    if token is None:
        if not (api_key and api_secret and room):
            raise click.UsageError("give --token, or --api-key, --api-secret and --room to mint one")
        token = sender.mint_token(api_key=api_key, api_secret=api_secret, room=room, identity=identity)
    try:
        if raw:
            pcm = sender.read_raw(sys.stdin.buffer, sample_rate=sample_rate, num_channels=channels)
        elif wav == "-":
            pcm = sender.read_wav(sys.stdin.buffer)
        else:
            assert wav is not None
            with open(wav, "rb") as f:
                pcm = sender.read_wav(f)
        segments = sender.split_segments(pcm, segment_seconds)
        report = asyncio.run(
            sender.send(url=url, token=token, segments=segments, avatar_identity=avatar_identity, chunk_ms=chunk_ms)
        )
    except AvalumaError as exc:
        _fail(exc)
        return
    except OSError as exc:
        raise click.ClickException(f"cannot read {wav}: {exc.strerror}") from None
    except KeyboardInterrupt:
        raise click.Abort() from None
    click.echo(
        f"sent {report.segments} segment(s), {report.seconds:.2f} s of audio; "
        f"avatar finished {len(report.finished)} segment(s)"
    )


@click.command(
    "agent",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("mode", required=False, metavar="[dev|start|console|download-files]")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def agent_command(ctx: click.Context, mode: str | None, args: tuple[str, ...]) -> None:
    """Run the LiveKit Agents worker (agent-1): STT -> LLM -> TTS -> avatar, built from config.

    \b
    avaluma agent dev        # development: reloads, logs to the console
    avaluma agent start      # production
    avaluma agent console    # talk to it in the terminal, no room
    Other arguments go to LiveKit Agents' CLI (avaluma agent start --help).
    Needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET (except console).
    """
    # Help options are off so that `avaluma agent start --help` reaches LiveKit's CLI; alone, they mean ours.
    if mode is None or mode in ("--help", "-h"):
        click.echo(ctx.get_help())
        return
    mode = AGENT_MODES.convert(mode, next(p for p in ctx.command.params if p.name == "mode"), ctx)
    from avaluma.agent.worker import run

    config_path = (ctx.obj or {}).get("config_path") if isinstance(ctx.obj, dict) else None
    if config_path:
        # Job processes are started fresh by LiveKit Agents and read the config from the environment.
        os.environ["AVALUMA_CONFIG"] = str(config_path)
    try:
        run(mode, list(args))
    except AvalumaError as exc:
        _fail(exc)
