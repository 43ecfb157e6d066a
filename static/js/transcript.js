// The live transcript as a list of utterances, built from parsed server events (events.js).
// User chunks are cumulative (each one is the whole utterance so far), avatar chunks are
// incremental (each one adds words), and a final transcription replaces the partial bubble.
// An avatar bubble stays open until avatar.speak_ended so that chunks arriving after its final
// text (speak_text sends the final first) do not start a second bubble. A final sent ahead of the
// speech is what the avatar means to say: the bubble shows the words as they are spoken, and the
// whole text once the speech ends uninterrupted.

export class Transcript {
  constructor() {
    this.entries = [];
    this.open = { user: null, avatar: null };
    // A bubble closed by speak_ended while still partial: its final may follow.
    this.awaitingFinal = { user: null, avatar: null };
    this.operatorLine = null; // who sent the next avatar line (live control), when it is marked
  }

  /** The next avatar line is one staff ("staff") or a system ("api") sent through live control. */
  expectOperatorLine(sender) {
    this.operatorLine = sender || null;
  }

  /** Apply one parsed event; returns the entry it created or changed, or null. */
  apply(event) {
    switch (event.type) {
      case "user.transcription.chunk":
        return this.#chunk("user", event.text ?? "", (_, text) => text);
      case "avatar.transcription.chunk":
        return this.#chunk("avatar", event.text ?? "", joinWords);
      case "user.transcription":
        this.awaitingFinal.avatar = null;
        return this.#final("user", event.text ?? "", false);
      case "avatar.transcription":
        return this.#final("avatar", event.text ?? "", true);
      case "user.speak_started":
        this.awaitingFinal.avatar = null;
        return null;
      case "avatar.speak_started":
        this.awaitingFinal.avatar = null;
        return this.#startSpeaking();
      case "avatar.speak_ended":
        return this.#close("avatar");
      default:
        return null;
    }
  }

  /** A message typed for the avatar to answer (by the visitor, or `sentBy` staff or a system): shown in order, never merged. */
  addTyped(text, sentBy = null) {
    const entry = { id: this.entries.length + 1, speaker: "user", text, final: true, interrupted: false, typed: true };
    if (sentBy) entry.sentBy = sentBy;
    this.entries.push(entry);
    return entry;
  }

  /** The visitor interrupted: the avatar's current (or last) utterance was cut short. */
  markInterrupted() {
    const entry = this.open.avatar ?? this.awaitingFinal.avatar;
    if (!entry) return null;
    if (entry.unshown) {
      // Cut before a word was said: the visitor heard nothing, so there is nothing to show.
      this.open.avatar = null;
      return null;
    }
    entry.interrupted = true;
    // A final sent before the speech holds words never said: keep only those spoken.
    if (entry.intended !== undefined) entry.text = entry.spoken;
    entry.speaking = false;
    return entry;
  }

  #chunk(speaker, text, merge) {
    const entry = this.open[speaker];
    if (entry?.final && speaker === "avatar") {
      entry.spoken = merge(entry.spoken ?? "", text).trimStart();
      if (!entry.speaking) return null;
      entry.text = entry.spoken;
      return entry;
    }
    if (entry?.final) return this.#add(speaker, text);
    this.awaitingFinal[speaker] = null;
    if (!entry) return this.#add(speaker, merge("", text).trimStart());
    entry.text = merge(entry.text, text);
    return entry;
  }

  #final(speaker, text, keepOpen) {
    const open = this.open[speaker];
    let entry = open && !open.final ? open : this.awaitingFinal[speaker];
    this.awaitingFinal[speaker] = null;
    if (entry) {
      entry.text = text;
      entry.final = true;
      if (entry !== open) return entry;
    } else if (speaker === "avatar") {
      // Not spoken yet: not shown until the avatar starts to say it.
      entry = this.#add(speaker, "", true);
      Object.assign(entry, { intended: text, spoken: "", unshown: true });
      return null;
    } else {
      entry = this.#add(speaker, text, true);
    }
    this.open[speaker] = keepOpen ? entry : null;
    return entry;
  }

  #startSpeaking() {
    const entry = this.open.avatar;
    if (!entry?.unshown) return null;
    entry.unshown = false;
    entry.speaking = true;
    return entry;
  }

  #close(speaker) {
    const entry = this.open[speaker];
    this.open[speaker] = null;
    if (!entry) return null;
    if (!entry.final) this.awaitingFinal[speaker] = entry;
    if (entry.intended === undefined || entry.interrupted) return null;
    entry.text = entry.intended;
    entry.speaking = entry.unshown = false;
    return entry;
  }

  #add(speaker, text, final = false) {
    const entry = { id: this.entries.length + 1, speaker, text, final, interrupted: false };
    if (speaker === "avatar" && this.operatorLine) {
      entry.sentBy = this.operatorLine;
      this.operatorLine = null;
    }
    this.entries.push(entry);
    this.open[speaker] = entry;
    return entry;
  }
}

// Incremental chunks are words or pieces of words; put a space between two words unless one side
// already has it or the new piece is punctuation.
function joinWords(previous, piece) {
  if (!previous || /\s$/.test(previous) || /^[\s.,!?;:)]/.test(piece)) return previous + piece;
  return `${previous} ${piece}`;
}
