import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { errors as undiciErrors } from './undici.ts';
import { publishError } from '../observability/channels.ts';
import { TempFile, tempSpace } from './temp-file.ts';

type Controller = Dispatcher.DispatchController;

/**
 * Where a streamed body goes while its client is slower than the origin: a temporary file in
 * `directory`, up to `maxSize` bytes (nginx's proxy_temp_path, proxy_max_temp_file_size), so that
 * the origin is read at its own pace and its connection let go.
 */
export interface SpillOptions {
  readonly directory: string;
  readonly maxSize: number;
  /** Bytes this process's temp files may hold together (`tempSpace`): past it, clients pace origins. */
  readonly space: number;
}

/**
 * The streamed body of a response: read on demand, and destroying it aborts the exchange.
 * Chunks are held in memory up to the stream's high-water mark (64 KiB); past it they go on into a
 * temp file (`SpillOptions`) while the client catches up, and only past that (or without one)
 * does the origin wait for the client. Once the file is read out the body is back in memory, and
 * the file is gone.
 */
export class OriginBody extends Readable {
  readonly #controller: Controller;
  readonly #spill: SpillOptions | undefined;
  #file: TempFile | null = null;
  #originEnded = false;
  constructor(controller: Controller, spill: SpillOptions | undefined) {
    super();
    this.#controller = controller;
    this.#spill = spill;
  }

  /** A chunk from the origin. */
  receive(chunk: Buffer): void {
    const file = this.#file;
    if (file === null) {
      if (this.push(chunk)) return;
      if (this.#spill === undefined || tempSpace.used >= this.#spill.space) this.#controller.pause();
      else this.#file = new TempFile(this.#spill.directory, this.#writesCaughtUp);
    } else if (file.failed !== null) {
      this.destroy(tempFileError(file.failed));
    } else if (!file.append(chunk) || !this.#roomFor(file)) {
      // The disk is behind (resumed by #writesCaughtUp), or the file may grow no more (resumed
      // once it is read out): the origin waits.
      this.#controller.pause();
    }
  }

  /** Whether `file` may grow: under maxTempFileSize, and all temp files under limits.tempFileSpace. */
  #roomFor(file: TempFile): boolean {
    return file.size < this.#spill!.maxSize && tempSpace.used < this.#spill!.space;
  }

  readonly #writesCaughtUp = (): void => {
    if (this.#file !== null && this.#roomFor(this.#file)) this.#controller.resume();
  };

  /** The origin's response has ended: the body ends once what was spilled is read. */
  complete(): void {
    this.#originEnded = true;
    if (this.#file === null) this.push(null);
  }

  override _read(): void {
    const file = this.#file;
    if (file === null) this.#controller.resume();
    else file.readNext(this.#fromFile);
  }

  readonly #fromFile = (err: Error | null, chunk: Buffer | null): void => {
    if (this.destroyed) return;
    if (err !== null) {
      this.destroy(tempFileError(err));
    } else if (chunk !== null) {
      this.push(chunk);
    } else {
      // Everything spilled has been read and nothing waits to be written: back to memory.
      this.#file!.close();
      this.#file = null;
      if (this.#originEnded) this.push(null);
      else this.#controller.resume();
    }
  };

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#file?.close();
    this.#file = null;
    // Once the origin's response has ended there is nothing left to abort (its connection may serve another).
    if (!this.#originEnded) this.#controller.abort(err ?? new undiciErrors.RequestAbortedError());
    callback(err);
  }
}

/** A temp file that failed (a full disk, a directory gone): said in the log, as nginx does. */
function tempFileError(err: Error): Error {
  publishError({ ctx: null, error: err, where: 'proxy temp file' });
  return err;
}
