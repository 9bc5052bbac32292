"""A loopback HTTP reverse proxy that counts the requests a run sends to the Prefect server.

``requests`` is (method, path) per request since the last reset; ``log`` is (monotonic time, method, path,
user agent), which tells when a worker pod first reached the API and when its first heartbeat made it ONLINE.
A WebSocket (a Prefect 3 worker's events) is passed through as a byte stream once counted.
``listen_host`` is where it listens: 127.0.0.1, or a node test bed's bridge address, which pods reach.
"""

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CountingProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1"):
        self.requests = []
        self.log = []
        self.listen_host = listen_host
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _tunnel(self):
                upstream = socket.create_connection((target_host, target_port), timeout=60)
                upstream.settimeout(None)
                self.connection.settimeout(None)
                lines = ["%s %s %s" % (self.command, self.path, self.request_version)]
                lines += ["%s: %s" % (key, "%s:%d" % (target_host, target_port) if key.lower() == "host" else value)
                          for key, value in self.headers.items()]
                upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

                def pump(source, target):
                    try:
                        while True:
                            data = source.recv(65536)
                            if not data:
                                break
                            target.sendall(data)
                    except OSError:
                        pass
                    finally:
                        try:
                            target.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass

                back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
                back.start()
                pump(self.connection, upstream)
                back.join()
                upstream.close()
                self.close_connection = True

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path))
                proxy.log.append((time.monotonic(), self.command, self.path, self.headers.get("User-Agent", "")))
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    return self._tunnel()
                upstream = http.client.HTTPConnection(target_host, target_port, timeout=60)
                headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in ("host", "connection"))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer((listen_host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        self.requests = []

    def close(self):
        self.server.shutdown()
        self.server.server_close()
