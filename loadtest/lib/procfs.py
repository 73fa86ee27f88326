"""/proc sampling: peak RSS and thread count of a server's process tree."""

import os
import threading

from .common import SAMPLE_INTERVAL


def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def process_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


class Sampler(threading.Thread):
    """Samples RSS and thread count of a process and its descendants."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_event = threading.Event()
        self.rss_peak_kb = 0
        self.hwm_kb = 0
        self.threads_peak = 0
        self.processes_peak = 0

    def sample(self):
        rss = hwm = threads = 0
        tree = process_tree(self.pid)
        for p in tree:
            s = read_status(p)
            rss += s.get("VmRSS", 0)
            hwm += s.get("VmHWM", 0)
            threads += s.get("Threads", 0)
        self.rss_peak_kb = max(self.rss_peak_kb, rss)
        self.hwm_kb = max(self.hwm_kb, hwm)
        self.threads_peak = max(self.threads_peak, threads)
        self.processes_peak = max(self.processes_peak, len(tree))

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_INTERVAL)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=2)
        self.sample()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(root):
    """{pid: utime + stime} over a process and its descendants, in clock ticks
    (/proc/PID/stat fields 14 and 15: every thread of the process, not its
    children, which are in the tree themselves)."""
    out = {}
    for p in process_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            out[p] = int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_seconds(before, after):
    """CPU seconds spent between two cpu_ticks() readings. A process that started
    in between counts from zero; one that ended in between is lost (a server's
    tree does not change during a run)."""
    ticks = sum(t - before.get(p, 0) for p, t in after.items())
    return max(ticks, 0) / CLK_TCK
