// Browser side of the chat example: one WebSocket per joined room, subprotocol chat.v2. The server
// sends JSON events; every line is built from their fields with textContent (never innerHTML), and
// user-typed fields sit in <bdi> so their direction cannot leak into the rest of the line.
const $ = (id) => document.getElementById(id);
let socket = null;

function setConnected(connected) {
  $("text").disabled = !connected;
  $("say").disabled = !connected;
  $("leave").disabled = !connected;
  $("connect").disabled = connected;
}

/** An isolated piece of user text. */
function bdi(text, className) {
  const el = document.createElement("bdi");
  el.className = className;
  el.textContent = text;
  return el;
}

/** Appends a line; `kind` is "message" for what users say, "system" or "error" for the rest. */
function line(kind, ...parts) {
  const li = document.createElement("li");
  li.className = kind;
  li.append(...parts);
  $("messages").append(li);
}

function show(event) {
  switch (event.type) {
    case "message":
      return line("message", bdi(event.name, "name"), ": ", bdi(event.text, "text"));
    case "joined":
      return line("system", "* ", bdi(event.name, "name"), " joined ", bdi(event.room, "room"));
    case "left":
      return line("system", "* ", bdi(event.name, "name"), " left");
    case "gap":
      return line("system", "* the connection between servers was lost: messages may be missing");
    case "error":
      return line("error", "! ", bdi(event.text, "text"));
  }
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = encodeURIComponent($("room").value.trim());
  const name = encodeURIComponent($("name").value.trim());
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/chat/${room}?name=${name}`, "chat.v2");
  $("status").textContent = "connecting";
  socket.addEventListener("open", () => {
    $("status").textContent = `connected (${socket.protocol}, ${socket.extensions || "no extensions"})`;
    setConnected(true);
  });
  socket.addEventListener("message", (e) => {
    let event;
    try {
      event = JSON.parse(e.data);
    } catch {
      return; // not from this server's protocol
    }
    show(event);
  });
  socket.addEventListener("close", (e) => {
    $("status").textContent = e.reason ? `closed (${e.code}: ${e.reason})` : `closed (${e.code})`;
    setConnected(false);
  });
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket && $("text").value) socket.send($("text").value);
  $("text").value = "";
});

$("leave").addEventListener("click", () => socket?.close(1000, "bye"));
