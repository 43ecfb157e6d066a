// The admin's "Copy snippet" button: copies the profile's embed snippet to the clipboard.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(source.value);
    button.textContent = "Copied";
  } catch {
    source.select(); // no clipboard access: leave it selected for Ctrl+C
    button.textContent = "Select and copy";
  }
});
