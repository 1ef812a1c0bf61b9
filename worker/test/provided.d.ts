// Values the Node-side global setup provides to tests (see node/sim-launcher.ts).
export {};
declare module "vitest" {
  export interface ProvidedContext {
    /** Base URL of the loopback service that starts `lambda-sim` processes. */
    simLauncher: string;
  }
}
