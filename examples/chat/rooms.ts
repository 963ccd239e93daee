import type { DefaultWebSocketSession } from "../../src/index.js";

type Member = DefaultWebSocketSession<unknown, unknown>;

/** Room membership for the chat example. */
export class ChatRooms {
  private readonly rooms = new Map<string, Set<Member>>();

  get size(): number {
    return this.rooms.size;
  }

  join(room: string, member: Member): void {
    const members = this.rooms.get(room) ?? new Set<Member>();
    members.add(member);
    this.rooms.set(room, members);
  }

  leave(room: string, member: Member): void {
    const members = this.rooms.get(room);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) this.rooms.delete(room);
  }

  /** Sends to every member still open; a member that cannot keep up is skipped, not awaited. */
  broadcast(room: string, text: string): void {
    for (const member of this.rooms.get(room) ?? []) {
      if (member.isOpen) member.send(text).catch(() => {});
    }
  }
}
