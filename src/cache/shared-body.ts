import { Readable } from 'node:stream';

/**
 * One origin body, many readers: the tee behind streaming-while-storing and collapsed forwarding.
 *
 * The origin's bytes are kept (for the store) up to `maxKept`; every reader — the client that
 * caused the fetch and each collapsed waiter — gets its own Readable that starts at byte 0 and
 * moves at its own pace, so waiters receive bytes as they arrive instead of when the object is
 * stored, and a slow reader never slows the others.
 *
 * Lifetime: while the body is being kept, the fetch goes on when readers leave (anyone may still
 * want the stored object: the origin request outlives the client that started it). Once it is
 * past `maxKept` it will not be stored: bytes every reader has had are dropped, the origin is read
 * at the pace of the fastest reader, a reader more than `maxLag` bytes behind is cut off, new
 * readers can no longer join, and when the last reader leaves the origin body is destroyed.
 * `maxLag` bounds what one slow reader can hold while faster ones keep the origin flowing.
 */

export interface SharedBodyOptions {
  readonly maxKept: number;
  readonly maxLag: number;
  /** Called once: the whole body when it ended within maxKept; null when it will not be complete (too large, failed, abandoned). */
  readonly onDone: (body: Buffer | null, error?: Error) => void;
}

interface Reader {
  readonly stream: Readable;
  /** Absolute index of the next chunk to push. */
  next: number;
  /** It asked for more (read() was called since its last refused push). */
  wanting: boolean;
}

export class SharedBody {
  /** null: the body was whole from the start (`SharedBody.whole`). */
  readonly #source: Readable | null;
  readonly #options: SharedBodyOptions;
  readonly #readers = new Set<Reader>();
  #chunks: Buffer[] = [];
  /** Absolute index of #chunks[0]. */
  #base = 0;
  #received = 0;
  #retained = 0;
  #keeping = true;
  #ended = false;
  #failed: Error | null = null;
  #done = false;

  /**
   * `source` a Buffer: a body that arrived whole (the origin exchange's small responses): no stream
   * to tee, `onDone` gets it in a microtask (when within maxKept), readers start on an ended body.
   */
  constructor(source: Readable | Buffer, options: SharedBodyOptions) {
    this.#options = options;
    if (Buffer.isBuffer(source)) {
      this.#source = null;
      this.#chunks.push(source);
      this.#received = this.#retained = source.length;
      this.#ended = true;
      this.#keeping = source.length <= options.maxKept;
      // Not from inside the constructor: `onDone` may use what the caller is still assigning.
      queueMicrotask(() => this.#finish(this.#keeping ? source : null));
      return;
    }
    this.#source = source;
    source.on('data', (chunk: Buffer) => this.#onData(chunk));
    source.once('end', () => this.#onEnd());
    source.on('error', () => {}); // reported through 'close'
    source.once('close', () => { if (!this.#ended) this.#onFail(source.errored ?? new Error('origin body ended prematurely')); });
  }

  /** Bytes received from the origin so far. */
  get received(): number { return this.#received; }

  /** The whole body is here and kept for `onDone`: a reader would only replay it. */
  get complete(): boolean { return this.#ended && this.#keeping && this.#failed === null; }

  /** Whether a new reader can still start from byte 0. */
  get joinable(): boolean { return this.#base === 0 && this.#failed === null; }

  /** A new reader from byte 0, or null when the start is gone (not kept) or the body failed. */
  attach(): Readable | null {
    if (!this.joinable) return null;
    const reader: Reader = {
      next: 0,
      wanting: false,
      stream: new Readable({
        read: () => {
          reader.wanting = true;
          this.#pump(reader);
          if (!this.#ended && this.#source!.isPaused()) this.#source!.resume();
        },
        destroy: (error, callback) => {
          this.#detach(reader);
          callback(error);
        },
      }),
    };
    // Whoever reads it learns of a failure through 'close' before 'end'; an unread failure must not crash.
    reader.stream.on('error', () => {});
    this.#readers.add(reader);
    return reader.stream;
  }

  #pump(reader: Reader): void {
    while (reader.wanting && reader.next < this.#base + this.#chunks.length) {
      const chunk = this.#chunks[reader.next - this.#base];
      reader.next++;
      if (!reader.stream.push(chunk)) reader.wanting = false;
    }
    if (this.#ended && reader.next === this.#base + this.#chunks.length) reader.stream.push(null);
  }

  #onData(chunk: Buffer): void {
    this.#received += chunk.length;
    this.#chunks.push(chunk);
    this.#retained += chunk.length;
    if (this.#keeping && this.#received > this.#options.maxKept) {
      this.#keeping = false;
      this.#finish(null);
    }
    for (const reader of this.#readers) if (reader.wanting) this.#pump(reader);
    if (!this.#keeping) {
      if (this.#readers.size === 0) {
        // Nobody reads it and it will not be stored: stop the origin.
        this.#source!.destroy();
        return;
      }
      this.#trim();
      // Not kept: read the origin no faster than the fastest reader.
      let anyWanting = false;
      for (const reader of this.#readers) if (reader.wanting) { anyWanting = true; break; }
      if (!anyWanting) this.#source!.pause();
    }
  }

  /** Drops chunks every reader has had; cuts off a reader that lags too far behind. */
  #trim(): void {
    for (;;) {
      let slowest: Reader | undefined;
      for (const reader of this.#readers) if (slowest === undefined || reader.next < slowest.next) slowest = reader;
      const keepFrom = slowest === undefined ? this.#base + this.#chunks.length : slowest.next;
      while (this.#base < keepFrom) {
        this.#retained -= this.#chunks[0].length;
        this.#chunks.shift();
        this.#base++;
      }
      if (slowest === undefined || this.#retained <= this.#options.maxLag) return;
      // Only a reader that others have left behind is cut off; when all are slow the origin waits.
      let ahead = false;
      for (const reader of this.#readers) if (reader.next > slowest.next) { ahead = true; break; }
      if (!ahead) return;
      slowest.stream.destroy(new Error('reader fell too far behind the origin'));
    }
  }

  #onEnd(): void {
    this.#ended = true;
    if (this.#keeping) this.#finish(this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#received));
    for (const reader of this.#readers) this.#pump(reader);
  }

  #onFail(error: Error): void {
    this.#failed = error;
    this.#finish(null, error);
    for (const reader of [...this.#readers]) reader.stream.destroy(error);
  }

  #detach(reader: Reader): void {
    if (!this.#readers.delete(reader)) return;
    if (this.#readers.size === 0 && !this.#keeping && !this.#ended) {
      this.#source!.destroy();
      return;
    }
    if (!this.#keeping) this.#trim();
    if (this.#readers.size > 0 && !this.#ended && this.#source!.isPaused()) {
      for (const other of this.#readers) if (other.wanting) { this.#source!.resume(); break; }
    }
  }

  #finish(body: Buffer | null, error?: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#options.onDone(body, error);
  }
}
