// biome-ignore-all lint/suspicious/noExplicitAny: the tests mutate parsed YAML of known shape to break it on purpose
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../../src/config.js';
import {
  checkCompose,
  checkDockerfile,
  checkManifests,
  k8sFiles,
  ROOT,
  readK8s,
  schemaCheck,
} from '../../support/deployment-checks.js';

/**
 * [REQ-DEP-01] The deployment files, checked offline (no Docker engine or cluster here): both
 * Dockerfiles with dockerfile-utils and the project's rules, every Kubernetes object against the
 * API's JSON schemas (kubernetes-models) and cross-references, compose.yaml's structure, the
 * ConfigMap's radscribe.yaml with the gateway's own config validator, and yamllint when Debian's
 * package is installed. Each checker is also given a copy with one real mistake and must name it.
 */
const read = (p: string) => readFileSync(path.join(ROOT, p), 'utf8');
const K8S = readK8s(k8sFiles());
const GPU = { gpuDeployment: 'radscribe-gpu' };

describe('Dockerfiles', () => {
  it.each([
    ['docker/Dockerfile', 'cpu'],
    ['docker/Dockerfile.cuda', 'cuda'],
  ] as const)('[REQ-DEP-01] %s lints clean', (file, variant) => {
    expect(checkDockerfile(read(file), { variant, context: ROOT })).toEqual([]);
  });

  it('[REQ-DEP-01] catches root, a missing health check, a shell-form entrypoint, a typo and a missing COPY source', () => {
    const good = read('docker/Dockerfile');
    const cases: [string, string, RegExp][] = [
      ['USER 10001:10001', 'USER root', /runs as root/],
      ['USER 10001:10001\n', '', /no USER/],
      ['HEALTHCHECK --interval=30s', 'HEALTHCHECK --intervall=30s', /Unknown flag: intervall/],
      [
        'ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]',
        'ENTRYPOINT /app/docker/entrypoint.sh',
        /exec form/,
      ],
      ['COPY bin ./bin', 'COPY binaries ./bin', /COPY binaries: not in the build context/],
      ['FROM node:24-bookworm-slim AS build', 'FROM node AS build', /pin the base image/],
      ['WORKDIR /app\n# tini', 'WORKDIR app\n# tini', /WORKDIR paths should be absolute/],
    ];
    for (const [from, to, want] of cases) {
      expect(good.includes(from)).toBe(true);
      const problems = checkDockerfile(good.replace(from, to), { variant: 'cpu', context: ROOT });
      expect(problems.join('\n')).toMatch(want);
    }
    const noHealth = good.replace(/HEALTHCHECK[^\n]*\\\n[^\n]*\n/, '');
    expect(checkDockerfile(noHealth, { variant: 'cpu', context: ROOT })).toContain('final stage has no HEALTHCHECK');
  });

  it('[REQ-DEP-01] the CUDA image must fetch and check the provider libraries on a CUDA 12 base', () => {
    const good = read('docker/Dockerfile.cuda');
    const noFetch = good.replace(' && ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node \\\n', '');
    expect(checkDockerfile(noFetch, { variant: 'cuda', context: ROOT })).toContain(
      'the CUDA provider libraries are never fetched',
    );
    const cuda11 = good.replace(
      'nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04',
      'nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04',
    );
    expect(checkDockerfile(cuda11, { variant: 'cuda', context: ROOT }).join('\n')).toMatch(/not a CUDA 12/);
    // The CPU file is not a CUDA image.
    expect(checkDockerfile(read('docker/Dockerfile'), { variant: 'cuda', context: ROOT }).length).toBeGreaterThan(0);
  });

  it('[REQ-DEP-01] docker/entrypoint.sh is valid POSIX sh (sh -n) and executable', () => {
    expect(spawnSync('sh', ['-n', path.join(ROOT, 'docker/entrypoint.sh')]).status).toBe(0);
    expect(() => execFileSync('test', ['-x', path.join(ROOT, 'docker/entrypoint.sh')])).not.toThrow();
  });
});

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('[REQ-DEP-01] every object validates against its API schema', () => {
    expect(K8S.map((d) => `${String(d.kind)}`).sort()).toEqual(
      expect.arrayContaining(['ConfigMap', 'Deployment', 'Deployment', 'PersistentVolumeClaim', 'Secret', 'Service']),
    );
    expect(schemaCheck(K8S)).toEqual([]);
  }, 60_000);

  it('[REQ-DEP-01] the schema check catches a wrong type and an unknown enum value', () => {
    const broken = structuredClone(K8S);
    const dep = broken.find(
      (d) => d.kind === 'Deployment' && (d.metadata as { name: string }).name === 'radscribe',
    ) as { spec: { replicas: unknown; template: unknown } };
    dep.spec.replicas = 'two';
    const pvc = broken.find((d) => d.kind === 'PersistentVolumeClaim') as { spec: { accessModes: string[] } };
    pvc.spec.accessModes = ['ReadWriteEverywhere'];
    const problems = schemaCheck(broken).join('\n');
    expect(problems).toMatch(/Deployment\/radscribe: \/spec\/replicas must be integer/);
    expect(problems).toMatch(
      /PersistentVolumeClaim\/radscribe-instances: \/spec\/accessModes\/0 must be equal to one of/,
    );
  }, 60_000);

  it('[REQ-DEP-01] replicas, probes, GPU request, RWX volume, Secret keys and references hold together', () => {
    expect(checkManifests(K8S, GPU)).toEqual([]);
  });

  it('[REQ-DEP-01] catches a ReadWriteOnce volume shared by replicas, a missing GPU request, a typo in a probe and a dangling Secret key', () => {
    const mutate = (fn: (docs: Record<string, any>[]) => void) => {
      const docs = structuredClone(K8S) as Record<string, any>[];
      fn(docs);
      return checkManifests(docs, GPU).join('\n');
    };
    const pvc = (d: Record<string, any>[]) =>
      d.find((x) => x.metadata.name === 'radscribe-instances') as Record<string, any>;
    const dep = (d: Record<string, any>[], n: string) =>
      d.find((x) => x.kind === 'Deployment' && x.metadata.name === n) as Record<string, any>;
    expect(mutate((d) => (pvc(d).spec.accessModes = ['ReadWriteOnce']))).toMatch(
      /PVC radscribe-instances is not ReadWriteMany/,
    );
    expect(
      mutate((d) => delete dep(d, 'radscribe-gpu').spec.template.spec.containers[0].resources.limits['nvidia.com/gpu']),
    ).toMatch(/radscribe-gpu: no nvidia.com\/gpu limit/);
    expect(
      mutate((d) => {
        const c = dep(d, 'radscribe').spec.template.spec.containers[0];
        c.livenesProbe = c.livenessProbe;
        delete c.livenessProbe;
      }),
    ).toMatch(/livenessProbe does not ask \/health/);
    expect(
      mutate((d) => {
        const s = d.find((x) => x.metadata.name === 'radscribe-keys') as Record<string, any>;
        delete s.stringData['database-url'];
      }),
    ).toMatch(/DATABASE_URL_FILE=\/etc\/radscribe\/keys\/database-url is no key of a mounted Secret/);
    expect(mutate((d) => (dep(d, 'radscribe').spec.replicas = 1))).toMatch(/replicas 1 < 2/);
  });

  it('[REQ-DEP-01] the ConfigMap radscribe.yaml passes the gateway own configuration validator', () => {
    const cm = K8S.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> };
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-k8s-config-'));
    try {
      const file = path.join(dir, 'radscribe.yaml');
      writeFileSync(file, cm.data['radscribe.yaml'] as string);
      const cfg = loadConfig({ file, env: { RADSCRIBE_PACS_PASSWORD: 'x' } });
      expect(cfg.jobs.leaseMs).toBe(60_000);
      expect(cfg.dataDir).toBe('/var/lib/radscribe');
      // The same validator refuses a typo in it, naming the key.
      writeFileSync(file, (cm.data['radscribe.yaml'] as string).replace('leaseMs: 60000', 'leasMs: 60000'));
      expect(() => loadConfig({ file, env: {} })).toThrow(/jobs\.leasMs: unknown key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('[REQ-DEP-01] kustomization.yaml lists files that exist', () => {
    const k = parseYaml(read('deploy/k8s/kustomization.yaml')) as { resources: string[] };
    for (const r of k.resources) expect(k8sFiles().map((f) => path.basename(f))).toContain(r);
  });
});

describe('docker/compose.yaml', () => {
  const dir = path.join(ROOT, 'docker');
  const compose = parseYaml(read('docker/compose.yaml')) as Record<string, any>;
  const optional = ['./prometheus-token'];

  it('[REQ-DEP-01] services, health checks, depends_on conditions, mounts', () => {
    expect(checkCompose(compose, dir, optional)).toEqual([]);
    expect(compose.services.radscribe.depends_on.postgres.condition).toBe('service_healthy');
  });

  it('[REQ-DEP-01] catches waiting on a service without a health check and an unknown condition', () => {
    const a = structuredClone(compose);
    delete a.services.postgres.healthcheck;
    expect(checkCompose(a, dir, optional)).toEqual(
      expect.arrayContaining(['radscribe: waits for postgres to be healthy, but postgres has no healthcheck']),
    );
    const b = structuredClone(compose);
    b.services.radscribe.depends_on.orthanc.condition = 'service_ready';
    expect(checkCompose(b, dir, optional)).toContain('radscribe: depends_on orthanc: unknown condition service_ready');
    const c = structuredClone(compose);
    c.services.radscribe.volumes[0] = './radscribe.yml:/etc/radscribe/radscribe.yaml:ro';
    expect(checkCompose(c, dir, optional)).toContain('radscribe: bind mount ./radscribe.yml does not exist');
  });
});

const yamllint = spawnSync('yamllint', ['--version']).status === 0;
(yamllint ? it : it.skip)('[REQ-DEP-01] yamllint (Debian) passes on docker/ and deploy/ YAML', () => {
  const r = spawnSync(
    'yamllint',
    [
      '-c',
      '.yamllint.yaml',
      '-f',
      'parsable',
      'deploy',
      'docker/compose.yaml',
      'docker/radscribe.yaml',
      'docker/prometheus.yml',
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
});
if (!yamllint) process.stderr.write('yamllint not installed (apt-get install yamllint): its test is skipped\n');
