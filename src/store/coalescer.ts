// Group commit. Calls that arrive while earlier ones are being written wait
// for the next statement and share it: under load many callers pay for one
// round trip and one commit, and a lone call goes out at once, without a
// timer. At most `parallel` statements run at a time; each takes at most
// `maxBatch` items.
export class Coalescer<I, O> {
  private queue: { item: I; resolve: (out: O) => void; reject: (error: unknown) => void }[] = [];
  private running = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly options: { parallel: number; maxBatch: number },
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.next();
    });
  }

  private next(): void {
    while (this.running < this.options.parallel && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.running++;
      this.run(batch.map((entry) => entry.item))
        .then(
          (outs) => {
            for (const [index, entry] of batch.entries()) entry.resolve(outs[index]!);
          },
          (error: unknown) => {
            for (const entry of batch) entry.reject(error);
          },
        )
        .finally(() => {
          this.running--;
          this.next();
        });
    }
  }
}
