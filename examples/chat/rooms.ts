import type { SessionHandle } from "../../src/index.js";

type Member = Pick<SessionHandle, "isOpen" | "bufferedAmount" | "send" | "close">;

export interface ChatRoomsOptions {
  /** A member with more than this buffered (bytes of memory, see `bufferedAmount`) is skipped. */
  highWaterMark?: number;
  /** A member skipped this many times in a row is closed with 1008: it is not reading. */
  maxSkips?: number;
}

/** Room membership for the chat example. */
export class ChatRooms {
  private readonly rooms = new Map<string, Map<Member, number>>();
  private readonly highWaterMark: number;
  private readonly maxSkips: number;

  constructor(options: ChatRoomsOptions = {}) {
    this.highWaterMark = options.highWaterMark ?? 256 * 1024;
    this.maxSkips = options.maxSkips ?? 256;
  }

  get size(): number {
    return this.rooms.size;
  }

  join(room: string, member: Member): void {
    const members = this.rooms.get(room) ?? new Map<Member, number>();
    members.set(member, 0);
    this.rooms.set(room, members);
  }

  leave(room: string, member: Member): void {
    const members = this.rooms.get(room);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) this.rooms.delete(room);
  }

  /**
   * Sends to every member still open, without waiting for any: a member that does not keep up (over
   * the high-water mark) misses the message, and one that misses `maxSkips` in a row is closed, so a
   * member that never reads costs bounded memory and never slows the others.
   */
  broadcast(room: string, text: string): void {
    const members = this.rooms.get(room);
    if (!members) return;
    for (const [member, skipped] of members) {
      if (!member.isOpen) continue;
      if (member.bufferedAmount > this.highWaterMark) {
        if (skipped + 1 >= this.maxSkips) void member.close(1008, "Not reading").catch(() => {});
        members.set(member, skipped + 1);
        continue;
      }
      if (skipped > 0) members.set(member, 0);
      member.send(text).catch(() => {});
    }
  }
}
