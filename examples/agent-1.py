"""agent-1: a LiveKit voice agent with an Avaluma avatar.

The voice pipeline of the hosted product: AssemblyAI speech-to-text -> OpenAI gpt-4.1-mini -> Cartesia sonic-3, with
Silero VAD, LiveKit's multilingual end-of-turn model and noise cancellation. The three lines marked "avatar" are all
an existing agent needs to be shown as a talking face.

    pip install ./plugins/livekit-plugin livekit-plugins-assemblyai livekit-plugins-openai livekit-plugins-cartesia \
        livekit-plugins-silero livekit-plugins-noise-cancellation
    set -a; . examples/.env; set +a            # LIVEKIT_*, AVALUMA_*, and the three provider keys
    python examples/agent-1.py dev             # or: console (speak in the terminal), start (production)

See docs/quickstart.md.
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli, inference, room_io
from livekit.plugins import assemblyai, avaluma, cartesia, noise_cancellation, openai, silero

INSTRUCTIONS = (
    "You are a friendly, concise voice assistant shown as a talking avatar. Answer in one or two short sentences, "
    "in plain words (no lists, no markdown): everything you write is spoken."
)


def prewarm(proc: JobProcess) -> None:
    """Once per worker process: load the VAD model before the first call."""
    proc.userdata["vad"] = silero.VAD.load()


def build_session(vad: silero.VAD | None = None) -> AgentSession:
    return AgentSession(
        stt=assemblyai.STT(),  # ASSEMBLYAI_API_KEY; universal streaming
        llm=openai.LLM(model="gpt-4.1-mini"),  # OPENAI_API_KEY
        tts=cartesia.TTS(model="sonic-3"),  # CARTESIA_API_KEY
        vad=vad or silero.VAD.load(),
        # LiveKit's multilingual end-of-turn model (14 languages; the bundled local one, or LiveKit Cloud's).
        turn_handling={"turn_detection": inference.TurnDetector()},
    )


def build_avatar() -> avaluma.AvatarSession:
    # AVALUMA_API_URL (default 127.0.0.1:8080, `avaluma serve`) and AVALUMA_API_KEY come from the environment.
    return avaluma.AvatarSession(avatar_id=os.environ.get("AVALUMA_AVATAR_ID", "astronaut"))


def room_options() -> room_io.RoomOptions:
    # BVC needs LiveKit Cloud; against a self-hosted LiveKit server it does nothing.
    return room_io.RoomOptions(audio_input=room_io.AudioInputOptions(noise_cancellation=noise_cancellation.BVC()))


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = build_session(ctx.proc.userdata.get("vad"))

    avatar = build_avatar()  # avatar
    await avatar.start(session, room=ctx.room)  # avatar: joins the room, speaks the agent's audio

    await session.start(agent=Agent(instructions=INSTRUCTIONS), room=ctx.room, room_options=room_options())
    session.generate_reply(instructions="Greet the user in one short sentence.")


if __name__ == "__main__":
    try:  # a .env next to the working directory, when python-dotenv is installed
        from dotenv import load_dotenv

        load_dotenv()
    except ImportError:
        pass
    cli.run_app(server)
