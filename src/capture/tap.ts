/**
 * What a transport reports to a packet capture (issue: pcap taps). Transports call the tap for every
 * datagram or WebSocket message they send or receive; the pcap writer (src/capture/) turns the calls
 * into packets. A transport without a tap pays nothing: the tap is optional.
 */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export interface CaptureTap {
  /** A UDP datagram, as sent or received, with its real addresses. */
  udp(from: Endpoint, to: Endpoint, payload: Uint8Array): void;
  /** A WebSocket connection opened (the pcap writer synthesizes the TCP + HTTP upgrade handshake). */
  wsOpen(client: Endpoint, server: Endpoint): void;
  /** One binary WebSocket message carrying frames, in the direction given. */
  wsMessage(from: Endpoint, to: Endpoint, payload: Uint8Array): void;
  wsClose(client: Endpoint, server: Endpoint): void;
  /** Flushes and closes the capture; the owner (a command) calls it on exit. Optional. */
  close?(): void;
}
