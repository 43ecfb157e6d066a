// The emulator's stand-in for the avatar's video: a drawn face whose mouth moves while the avatar
// speaks and whose eyebrows lift while it listens.

const SIZE = 360;

export function createAvatarCanvas() {
  const canvas = document.createElement("canvas");
  canvas.width = SIZE;
  canvas.height = SIZE;
  canvas.className = "avatar-canvas";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "Emulated avatar");
  const state = { speaking: false, listening: false, frame: 0 };
  const context = canvas.getContext("2d");

  const draw = (time) => {
    if (context) paint(context, state, time);
    state.frame = requestAnimationFrame(draw);
  };
  state.frame = requestAnimationFrame(draw);

  return {
    element: canvas,
    setSpeaking(speaking) {
      state.speaking = speaking;
      canvas.dataset.speaking = String(speaking);
    },
    setListening(listening) {
      state.listening = listening;
    },
    stop() {
      cancelAnimationFrame(state.frame);
    },
  };
}

function paint(ctx, { speaking, listening }, time) {
  const c = SIZE / 2;
  ctx.fillStyle = "#dfe9f3";
  ctx.fillRect(0, 0, SIZE, SIZE);
  // shoulders and head
  ctx.fillStyle = "#35577d";
  ctx.beginPath();
  ctx.ellipse(c, SIZE + 20, 150, 110, 0, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "#f1c9a5";
  ctx.beginPath();
  ctx.ellipse(c, c - 10, 95, 115, 0, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "#4a3426";
  ctx.beginPath();
  ctx.ellipse(c, c - 95, 100, 48, 0, Math.PI, Math.PI * 2);
  ctx.fill();
  // eyes blink for 150 ms every 4 s
  const blink = time % 4000 < 150;
  ctx.fillStyle = "#2b2b2b";
  for (const dx of [-38, 38]) {
    ctx.beginPath();
    ctx.ellipse(c + dx, c - 25, 10, blink ? 1.5 : 10, 0, 0, Math.PI * 2);
    ctx.fill();
    const lift = listening ? 12 : 0;
    ctx.fillRect(c + dx - 16, c - 52 - lift, 32, 5);
  }
  // mouth: open and close at a speaking rhythm, a closed smile otherwise
  ctx.strokeStyle = "#8c3b3b";
  ctx.fillStyle = "#8c3b3b";
  ctx.lineWidth = 5;
  ctx.beginPath();
  if (speaking) {
    const open = 4 + 14 * Math.abs(Math.sin(time / 90)) * (0.6 + 0.4 * Math.sin(time / 230));
    ctx.ellipse(c, c + 50, 28, open, 0, 0, Math.PI * 2);
    ctx.fill();
  } else {
    ctx.arc(c, c + 35, 30, 0.2 * Math.PI, 0.8 * Math.PI);
    ctx.stroke();
  }
}
