# ai-gateway container image: the app bundled into one file on a small Node.js 24 (Alpine) runtime,
# run as the unprivileged `node` user. No config or secrets are baked in: mount config.yaml, pass keys
# as environment variables.

# Build: bundle the TypeScript sources into dist/ai-gateway.cjs.
FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts skipped: the base image already has Node 24, so the project's own Node download is not needed.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY scripts ./scripts
RUN node scripts/build-binary.ts --bundle-only

# Run: Node and the bundle, nothing else (no npm packages, no sources).
FROM node:24.21.0-alpine
WORKDIR /app
COPY --from=build /app/dist/ai-gateway.cjs /app/ai-gateway.cjs
USER node
ENV NODE_ENV=production PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=8", "--no-concurrent-recompilation", "--no-maglev", "--expose-gc", "/app/ai-gateway.cjs"]
CMD ["--config", "/etc/ai-gateway/config.yaml"]
