// Renders transcript entries (transcript.js) as list items: one per utterance, starting with
// the speaker, updated in place while its words arrive.

const SPEAKERS = { user: "You", avatar: "Avatar" };
// Lines sent through live control, where the site marks them.
const ON_BEHALF = { staff: "on behalf of our staff", api: "an automatic message" };
const ASKED_BY = { staff: "Staff (asked the avatar)", api: "The site (asked the avatar)" };

function speakerLabel(entry) {
  if (entry.sentBy && entry.speaker === "avatar") return `Avatar (${ON_BEHALF[entry.sentBy] ?? entry.sentBy})`;
  if (entry.sentBy) return ASKED_BY[entry.sentBy] ?? entry.sentBy;
  return `${SPEAKERS[entry.speaker] ?? entry.speaker}${entry.typed ? " (typed)" : ""}`;
}

export class TranscriptView {
  constructor(list, emptyNote = null) {
    this.list = list;
    this.emptyNote = emptyNote;
    this.items = new Map();
  }

  show(entry) {
    let item = this.items.get(entry.id);
    if (!item) {
      item = document.createElement("li");
      const speaker = document.createElement("strong");
      speaker.textContent = `${speakerLabel(entry)}:`;
      const text = document.createElement("span");
      const note = document.createElement("em");
      item.append(speaker, " ", text, note);
      item.dataset.speaker = entry.speaker;
      if (entry.sentBy) item.dataset.sentBy = entry.sentBy;
      this.items.set(entry.id, item);
      this.list.append(item);
      if (this.emptyNote) this.emptyNote.hidden = true;
    }
    item.querySelector("span").textContent = entry.text || (entry.speaking ? "…" : "");
    item.querySelector("em").textContent = entry.interrupted ? " (interrupted)" : "";
    item.classList.toggle("partial", !entry.final || Boolean(entry.speaking));
    // Follow the conversation inside the list (it scrolls on its own), not the whole page.
    this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
    this.items.clear();
    if (this.emptyNote) this.emptyNote.hidden = false;
  }
}
