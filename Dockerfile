# The chat API, built with tsc and run with node (no dev dependencies in the final image; the
# client kit in client/ is not part of the server image).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY schema ./schema
COPY src ./src
RUN npm run build:server

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY schema ./schema
# The embedded database (used when DATABASE_URL is unset) lives in a volume the app user owns.
ENV DATA_DIR=/data
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 4000
# Healthy while the process serves (/healthz): readiness (/readyz) is the load balancer's, and fails
# on every instance at once while Redis is down, which a health check would take for a fleet to replace.
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "const h=process.env.HOST;fetch('http://'+(!h||h==='0.0.0.0'||h==='::'?'127.0.0.1':h.includes(':')?'['+h+']':h)+':'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/main.js"]
