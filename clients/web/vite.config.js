// Build config: one page (routed in the browser), fonts copied next to it so
// the app never reaches outside its own origin.
import { cpSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const fonts = fileURLToPath(
  new URL("./node_modules/@excalidraw/excalidraw/dist/prod/fonts", import.meta.url),
);

function excalidrawFonts() {
  let outDir = "dist";
  return {
    name: "inkwire-excalidraw-fonts",
    apply: "build",
    configResolved(config) {
      outDir = config.build.outDir;
    },
    closeBundle() {
      cpSync(fonts, `${outDir}/excalidraw-assets/fonts`, { recursive: true });
    },
  };
}

export default defineConfig({
  base: "/",
  plugins: [excalidrawFonts()],
  define: { "process.env.IS_PREACT": JSON.stringify("false") },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      // Excalidraw's dependencies mark themselves "use client" (a React Server
      // Components hint): meaningless in a client-only bundle.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
  oxc: { jsx: { runtime: "automatic" } },
});
