// Browser side of the chat example: one WebSocket per joined room, subprotocol chat.v1.
const $ = (id) => document.getElementById(id);
let socket = null;

function setConnected(connected) {
  $("text").disabled = !connected;
  $("say").disabled = !connected;
  $("leave").disabled = !connected;
  $("connect").disabled = connected;
}

function show(line) {
  const li = document.createElement("li");
  li.textContent = line;
  $("messages").append(li);
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = encodeURIComponent($("room").value.trim());
  const name = encodeURIComponent($("name").value.trim());
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/chat/${room}?name=${name}`, "chat.v1");
  $("status").textContent = "connecting";
  socket.addEventListener("open", () => {
    $("status").textContent = `connected (${socket.protocol}, ${socket.extensions || "no extensions"})`;
    setConnected(true);
  });
  socket.addEventListener("message", (e) => show(e.data));
  socket.addEventListener("close", (e) => {
    $("status").textContent = `closed (${e.code})`;
    setConnected(false);
  });
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket && $("text").value) socket.send($("text").value);
  $("text").value = "";
});

$("leave").addEventListener("click", () => socket?.close(1000, "bye"));
