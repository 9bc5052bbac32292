"""A loopback TCP proxy that injects faults between a client and a real server (tests only).

It forwards bytes untouched (TLS passes through), so the client still verifies the real server's
certificate. ``after_chunks(n, action)`` runs ``action`` once the clients have sent ``n`` chunks, which
lands a fault in the middle of a module's sequence of requests; ``refuse`` makes it drop connections.
"""

import socket
import threading


class FaultProxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.refuse = False
        self.chunks = 0
        self.connections = 0
        self._trigger = None
        self._lock = threading.Lock()
        self._sockets = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def after_chunks(self, count, action):
        self._trigger = (count, action)

    def _accept(self):
        while not self._closed:
            try:
                client, dummy = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source, sink, from_client):
        try:
            while True:
                data = source.recv(65536)
                if not data or self.refuse:
                    break
                sink.sendall(data)
                if from_client:
                    self._count()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _count(self):
        action = None
        with self._lock:
            self.chunks += 1
            if self._trigger and self.chunks >= self._trigger[0]:
                action, self._trigger = self._trigger[1], None
        if action:
            action()

    def cut(self):
        """Drop every open connection and refuse new ones, as a dead server would."""
        self.refuse = True
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._closed = True
        self.cut()
        self.listener.close()
