"""A small real HTTP(S) server for tests (stdlib): ``http_server.py ADDRESS PORT [CERT KEY]``.

``/`` answers 200, ``/broken`` answers 500 (a camera whose web service is up but failing),
anything else 404. With CERT and KEY it speaks HTTPS. Prints "ready" once it listens.
"""

import http.server
import socket
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/": 200, "/broken": 500}.get(self.path, 404)
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET


def main() -> None:
    server = Server((sys.argv[1], int(sys.argv[2])), Handler)
    if len(sys.argv) > 4:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
