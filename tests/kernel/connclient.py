"""A client holding one socket for the lab: `connclient.py tcp|udp HOST PORT [SOURCE_PORT]`.

Prints `connected`, then for every line on stdin sends it on the same socket and prints the answer,
`timeout`, or `error <what>` (a reset shows here). The UDP socket keeps one fixed source port."""
import socket
import sys


def main() -> None:
    kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    if len(sys.argv) > 4:
        sock.bind(("0.0.0.0", int(sys.argv[4])))
    sock.settimeout(3)
    try:
        sock.connect((host, port))
    except OSError as exc:
        print(f"error {exc}", flush=True)
        return
    print("connected", flush=True)
    reader = sock.makefile("rb") if kind == "tcp" else None
    for line in sys.stdin:
        try:
            if kind == "tcp":
                sock.sendall(line.encode())
                answer = reader.readline().decode().strip() or "error closed"
            else:
                sock.settimeout(float(line.strip() or 1))
                sock.send(b"ping")
                answer = sock.recv(2048).decode()
        except socket.timeout:
            answer = "timeout"
        except OSError as exc:
            answer = f"error {exc}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
