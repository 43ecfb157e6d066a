// The LiveAvatar account box of the staff dashboard: credits left, minutes used today, when credits
// run out at the current pace, 429s in the last hour and the last failure. Read again every minute.

const REFRESH_MS = 60_000;
const number = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

function row(list, label, value) {
  const term = document.createElement("dt");
  term.textContent = label;
  const detail = document.createElement("dd");
  detail.textContent = value;
  list.append(term, detail);
}

function runOut(account, format) {
  if (account.credits_left === null) return "–";
  if (account.hours_left === null) return "not at this pace: no paid conversation in the last day";
  const hours = account.hours_left;
  const inWords = hours < 48 ? `${number.format(hours)} hours` : `${number.format(hours / 24)} days`;
  return `in about ${inWords} (${format(account.runs_out_at)})`;
}

export function showAccount(box, account, format) {
  const warning = box.querySelector(".account-warning");
  warning.textContent = account.warning;
  warning.hidden = !account.warning;
  box.classList.toggle("warn", Boolean(account.warning));
  const list = document.createElement("dl");
  row(list, "Credits left", account.credits_left === null ? "unknown" : number.format(account.credits_left));
  row(list, "Minutes used today", number.format(account.minutes_today));
  row(list, "Credits run out", runOut(account, format));
  row(list, "Refused for rate (429) in the last hour", String(account.rate_limited_last_hour));
  row(list, "Last LiveAvatar error", account.last_error ? `${account.last_error}, ${format(account.last_error_at)}` : "none");
  box.querySelector("dl").replaceWith(list);
}

export function watchAccount(box, format) {
  const load = async () => {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) showAccount(box, await response.json(), format);
    } catch {
      // The next minute tries again; what is on screen stays.
    }
  };
  load();
  setInterval(load, REFRESH_MS);
}
