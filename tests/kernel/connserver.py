"""A pod's long-lived-connection server for the lab: on TCP, answers every line with its name on the
same connection (keep-alive); on UDP, answers every datagram with its name. `python -S`, plain sockets."""
import socket
import sys
import threading


def tcp_client(conn: socket.socket, name: bytes) -> None:
    with conn:
        for _line in conn.makefile("rb"):
            conn.sendall(name + b"\n")


def tcp(port: int, name: bytes) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(64)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=tcp_client, args=(conn, name), daemon=True).start()


def main() -> None:
    name, port = sys.argv[1].encode(), int(sys.argv[2])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    threading.Thread(target=tcp, args=(port, name), daemon=True).start()
    print("ready", flush=True)
    while True:
        _data, peer = udp.recvfrom(2048)
        udp.sendto(name, peer)


if __name__ == "__main__":
    main()
