import { close, open, read, unlink, write } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { noteBodyBytes } from '../runtime/body-scavenge.ts';

/**
 * The bytes this process's temp files hold together (each file's bytes count until it is closed),
 * for `limits.tempFileSpace` and the metrics.
 */
export const tempSpace = { used: 0 };

/**
 * A response body's overflow on disk: the bytes an origin sent that the client has not taken yet,
 * appended to a file and read back in order (nginx's proxy temp files). The file is unlinked as
 * soon as it is open, so nothing is left behind whatever happens to the process; its space goes
 * when it is closed.
 *
 * One write and one read run at a time, on libuv's threads. The descriptor is closed only when
 * neither is in flight: a number closed under a queued write could be reused by the next socket
 * or file, and the write would land there.
 */
export class TempFile {
  readonly #path: string;
  #fd = -1;
  #opening = true;
  #closed = false;
  #error: Error | null = null;
  /** Chunks appended and not yet written; the first is being written while `#writing`. */
  #queue: Buffer[] = [];
  #queued = 0;
  #writing = false;
  #reading = false;
  /** Bytes in the file, and how far it has been read back. */
  #written = 0;
  #readOffset = 0;
  /** What this file adds to `tempSpace.used`. */
  #charged = 0;
  /** A read that found everything written already read: answered when the next write lands. */
  #waiting: ReadCallback | null = null;
  /** `append` said the queue was full: `onDrain` is owed once it is not. */
  #drainOwed = false;
  readonly #onDrain: () => void;

  /** `onDrain`: the write queue has room again after `append` answered false. */
  constructor(directory: string, onDrain: () => void) {
    this.#onDrain = onDrain;
    this.#path = join(directory, `outpost-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
    open(this.#path, 'wx+', 0o600, (err, fd) => {
      this.#opening = false;
      if (err) return this.#fail(err);
      this.#fd = fd;
      unlink(this.#path, () => {}); // the open descriptor keeps the file for us alone
      if (this.#closed) return this.#release();
      this.#flush();
    });
  }

  /** Why the file cannot be used, once it cannot. */
  get failed(): Error | null {
    return this.#error;
  }

  /** Bytes appended so far: the file's length once every write has landed. */
  get size(): number {
    return this.#written + this.#queued;
  }

  /**
   * Queues `chunk` to be written. false: the queue holds `WRITE_QUEUE_LIMIT` or more (the disk is
   * slower than what comes in): stop appending until `onDrain`, as with a Writable.
   */
  append(chunk: Buffer): boolean {
    if (this.#closed || this.#error !== null) return true;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    this.#charged += chunk.length;
    tempSpace.used += chunk.length;
    this.#flush();
    if (this.#queued < WRITE_QUEUE_LIMIT) return true;
    this.#drainOwed = true;
    return false;
  }

  /**
   * The next bytes (at most `READ_SIZE`) in the order appended, once written; `null` when every
   * byte appended has been read back. Called again only after it has called back.
   */
  readNext(callback: ReadCallback): void {
    if (this.#error !== null) return callback(this.#error, null);
    if (this.#readOffset === this.#written) {
      if (this.#queued === 0) return callback(null, null);
      this.#waiting = callback; // the open or the write in flight answers it
      return;
    }
    const length = Math.min(READ_SIZE, this.#written - this.#readOffset);
    const buffer = Buffer.allocUnsafe(length);
    this.#reading = true;
    read(this.#fd, buffer, 0, length, this.#readOffset, (err, bytes) => {
      this.#reading = false;
      if (this.#closed) return this.#release();
      if (err === null && bytes === 0) err = new Error('proxy temp file: ended before the bytes written to it');
      if (err !== null) return this.#fail(err, callback);
      this.#readOffset += bytes;
      noteBodyBytes(bytes);
      callback(null, bytes === length ? buffer : buffer.subarray(0, bytes));
    });
  }

  /** Drops what is left; the descriptor closes once no read or write is in flight. Calls back nothing more. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    tempSpace.used -= this.#charged;
    this.#charged = 0;
    this.#queue = [];
    this.#queued = 0;
    this.#waiting = null;
    this.#release();
  }

  #flush(): void {
    if (this.#writing || this.#opening || this.#fd < 0 || this.#closed || this.#queue.length === 0) return;
    const chunk = this.#queue[0];
    this.#writing = true;
    write(this.#fd, chunk, 0, chunk.length, this.#written, (err, bytes) => {
      this.#writing = false;
      if (this.#closed) return this.#release();
      if (err !== null) return this.#fail(err);
      this.#written += bytes;
      this.#queued -= bytes;
      // A short write (a full disk answers with one before ENOSPC): the rest goes next.
      if (bytes < chunk.length) this.#queue[0] = chunk.subarray(bytes);
      else this.#queue.shift();
      const waiting = this.#waiting;
      if (waiting !== null) {
        this.#waiting = null;
        this.readNext(waiting);
      }
      this.#flush();
      if (this.#drainOwed && this.#queued < WRITE_QUEUE_LIMIT && !this.#closed) {
        this.#drainOwed = false;
        this.#onDrain();
      }
    });
  }

  #fail(err: Error, callback: ReadCallback | null = this.#waiting): void {
    this.#error = err;
    this.#waiting = null;
    this.#queue = [];
    this.#queued = 0;
    callback?.(err, null);
  }

  #release(): void {
    if (this.#fd < 0 || this.#writing || this.#reading) return;
    const fd = this.#fd;
    this.#fd = -1;
    close(fd, () => {});
  }
}

type ReadCallback = (err: Error | null, chunk: Buffer | null) => void;

/** Bytes waiting to be written past which `append` asks for a pause: memory stays bounded when the disk is slower than the origin. */
export const WRITE_QUEUE_LIMIT = 256 * 1024;

/** Bytes read back at a time: a file read per 64 KiB, as a socket read hands them on. */
export const READ_SIZE = 64 * 1024;
