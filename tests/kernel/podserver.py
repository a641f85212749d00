"""A pod's HTTP server for the lab: answers every request with its name, the
address it was reached on and the client's address. Plain sockets, started
with `python -S`, because interpreter start-up is slow in the emulated guest."""
import socket
import sys
import threading


def answer(conn: socket.socket, name: str) -> None:
    with conn:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        local = conn.getsockname()[0].removeprefix("::ffff:")
        peer = conn.getpeername()[0].removeprefix("::ffff:")
        body = f"{name} {local} from {peer}\n".encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", port))
    server.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn, name), daemon=True).start()


if __name__ == "__main__":
    main()
