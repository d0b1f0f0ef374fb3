"""Dynamic batching: concurrent requests, for any of the served tasks, answered together.

A request waits at most `max_wait_ms` for others (or until `max_batch` inputs are waiting); the round then
runs on one worker thread (ServingBank.answer: one preprocessing pass per task, one forward per batch of a
group, tasks mixed), while the event loop keeps accepting the next round's requests. A failing round fails
only its own requests. More than `max_queue` waiting inputs is overload: `QueueFull` (HTTP 429).
"""

import asyncio
import concurrent.futures
import dataclasses
import time
from typing import Callable, List, Optional

from prompt_tuning_jax.serving.bank import Item, ServingBank


class QueueFull(Exception):
  """More inputs wait than the queue holds; retry after `retry_after` seconds."""

  def __init__(self, waiting: int, limit: int, retry_after: int = 1):
    super().__init__(f"the server is overloaded: {waiting} inputs wait (limit {limit}); retry after "
                     f"{retry_after} s.")
    self.retry_after = retry_after


@dataclasses.dataclass
class _Pending:
  item: Item
  future: asyncio.Future
  arrived: float


class Batcher:
  """Attributes:
    on_batch: called with (inputs in the round, seconds it ran) after each round (metrics).
  """

  def __init__(self, bank: ServingBank, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024,
               on_batch: Optional[Callable[[int, float], None]] = None):
    self.bank, self.max_batch, self.max_wait, self.max_queue = bank, max_batch, max_wait_ms / 1000, max_queue
    self.on_batch = on_batch or (lambda size, seconds: None)
    self._pending: List[_Pending] = []
    self._waiting_inputs = 0
    self._arrival: Optional[asyncio.Event] = None
    self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="serve-batch")
    self._task: Optional[asyncio.Task] = None

  @property
  def waiting(self) -> int:
    return self._waiting_inputs

  def start(self) -> None:
    self._arrival = asyncio.Event()
    self._task = asyncio.get_running_loop().create_task(self._collect())

  async def stop(self) -> None:
    """Answers what is waiting, then stops."""
    while self._pending:
      await asyncio.sleep(self.max_wait)
    if self._task is not None:
      self._task.cancel()
    self._worker.shutdown(wait=True)

  async def submit(self, item: Item) -> List[dict]:
    """The item's answers, once its round has run (exceptions of the round propagate)."""
    n = len(item.rows)
    if self._waiting_inputs + n > self.max_queue:
      raise QueueFull(self._waiting_inputs + n, self.max_queue)
    future = asyncio.get_running_loop().create_future()
    self._pending.append(_Pending(item, future, time.perf_counter()))
    self._waiting_inputs += n
    self._arrival.set()
    return await future

  def _take(self) -> List[_Pending]:
    """Whole requests, oldest first, up to max_batch inputs (at least one request)."""
    taken, inputs = [], 0
    while self._pending and (not taken or inputs + len(self._pending[0].item.rows) <= self.max_batch):
      pending = self._pending.pop(0)
      taken.append(pending)
      inputs += len(pending.item.rows)
    self._waiting_inputs -= inputs
    return taken

  async def _collect(self) -> None:
    loop = asyncio.get_running_loop()
    while True:
      await self._arrival.wait()
      self._arrival.clear()
      while self._pending:
        deadline = self._pending[0].arrived + self.max_wait
        while self._waiting_inputs < self.max_batch and time.perf_counter() < deadline:
          await asyncio.sleep(max(0.0, min(deadline - time.perf_counter(), 0.001)))
        taken = self._take()
        start = time.perf_counter()
        try:
          answers = await loop.run_in_executor(self._worker, self.bank.answer, [p.item for p in taken])
        except Exception as e:  # pylint: disable=broad-except  (a failing round answers its own requests 500)
          for pending in taken:
            if not pending.future.done():
              pending.future.set_exception(e)
          continue
        finally:
          self.on_batch(sum(len(p.item.rows) for p in taken), time.perf_counter() - start)
        for pending, answer in zip(taken, answers):
          if not pending.future.done():
            pending.future.set_result(answer)
