"""The emulated account's fixed resources and the simulated agent's deterministic replies."""

CREATED = "2026-01-01T00:00:00+00:00"
SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
VOICE_ID = "c2527536-6d1f-4412-a643-53a3497dada9"
DEFAULT_CONTEXT_ID = "5b9dba8a-aa31-11f0-a6ee-066a7fa2e369"
# A second of each, so that choosing from the catalogue is a real choice.
SECOND_AVATAR_ID = "0c3f6a9e-4b1d-4e3a-9f55-2d7c8b1e6a40"
SECOND_VOICE_ID = "7e1b2c3d-8f90-4a1b-b2c3-d4e5f6a7b8c9"
RECEPTION_CONTEXT_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
VOICE_AGENT_ID = "4f3e2d1c-0b9a-4877-8665-544332211009"

AVATARS = [
    {
        "id": SANDBOX_AVATAR_ID,
        "type": "VIDEO",
        "status": "ACTIVE",
        "name": "Wayne",
        "preview_url": None,
        "is_expired": False,
        "default_voice": {"id": VOICE_ID, "name": "Emulated voice"},
        "is_1080p": False,
        "created_at": CREATED,
        "updated_at": CREATED,
        "error_message": None,
    },
    {
        "id": SECOND_AVATAR_ID,
        "type": "VIDEO",
        "status": "ACTIVE",
        "name": "Ada",
        "preview_url": None,
        "is_expired": False,
        "default_voice": {"id": SECOND_VOICE_ID, "name": "Emulated voice (French)"},
        "is_1080p": True,
        "created_at": CREATED,
        "updated_at": CREATED,
        "error_message": None,
    },
]
VOICES = [
    {
        "id": VOICE_ID,
        "name": "Emulated voice",
        "description": None,
        "language": "en",
        "gender": "male",
        "created_at": CREATED,
        "updated_at": CREATED,
        "tags": [],
    },
    {
        "id": SECOND_VOICE_ID,
        "name": "Emulated voice (French)",
        "description": None,
        "language": "fr",
        "gender": "female",
        "created_at": CREATED,
        "updated_at": CREATED,
        "tags": [],
    },
]
CONTEXTS = [
    {
        "id": DEFAULT_CONTEXT_ID,
        "name": "Emulator default",
        "prompt": "You are a friendly receptionist.",
        "opening_text": "Hello! I am the emulated avatar. What would you like to talk about?",
        "links": [],
        "created_at": CREATED,
        "updated_at": CREATED,
        "required_dynamic_variables": [],
    },
    {
        "id": RECEPTION_CONTEXT_ID,
        "name": "Front desk",
        "prompt": "You answer questions about opening hours.",
        "opening_text": "Welcome to the front desk. Ask me about our opening hours.",
        "links": [],
        "created_at": CREATED,
        "updated_at": CREATED,
        "required_dynamic_variables": [],
    },
]
# Stored voice agents (API.md §8): a voice, a context and LLM settings under one id.
VOICE_AGENTS = [
    {
        "id": VOICE_AGENT_ID,
        "name": "Front desk agent",
        "type": "liveavatar_agent",
        "agent_configuration": {
            "voice_id": SECOND_VOICE_ID,
            "context_id": RECEPTION_CONTEXT_ID,
            "llm_settings": {"provider": "openai", "model": "gpt-4o-mini"},
        },
        "created_at": CREATED,
        "updated_at": CREATED,
    },
]
LANGUAGES = [
    {"language": "English", "code": "en"},
    {"language": "French", "code": "fr"},
    {"language": "German", "code": "de"},
    {"language": "Spanish", "code": "es"},
]

# Seconds of simulated speech per word, before EMULATOR_SPEED.
SECONDS_PER_WORD = 0.25
# Seconds the simulated LLM "thinks" before a reply, before EMULATOR_SPEED.
THINKING_SECONDS = 0.2


def context_for(config: dict) -> dict:
    """The session's context. Sessions minted without one get the default context, so that the
    out-of-the-box emulator talks (the real service would run a silent "restricted" avatar)."""
    context_id = (config.get("avatar_persona") or {}).get("context_id")
    agent_id = (config.get("voice_agent") or {}).get("id")
    agent = next((a for a in VOICE_AGENTS if a["id"] == agent_id), None)
    if agent:
        context_id = agent["agent_configuration"]["context_id"]
    return next((c for c in CONTEXTS if c["id"] == context_id), CONTEXTS[0])


def opening_line(config: dict) -> str:
    return context_for(config)["opening_text"]


def reply(text: str) -> str:
    """The agent's answer to something the user said: fixed, so tests can expect it."""
    words = text.lower()
    if any(greeting in words.split() for greeting in ("hello", "hi", "hey")):
        return "Hello! How can I help you today?"
    if "hours" in words or "open" in words:
        return "We are open from nine to five, Monday to Friday."
    if "bye" in words:
        return "Goodbye, and thank you for talking with me."
    return f"You said: {text.strip()}. Tell me more."
