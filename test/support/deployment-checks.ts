import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { parseAllDocuments } from 'yaml';

/**
 * Offline checks of the deployment files (issue 13 "Deployment": no Docker engine or cluster runs
 * here). Each function returns the problems it found, in words; [] = clean. Shared by
 * test/unit/deploy/deployment-files.test.ts, which also feeds each one a broken copy to show it
 * catches the mistake.
 */
export const ROOT = path.resolve(__dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Every YAML document of a file (a `---` stream), parse errors as problems. */
export function yamlDocuments(text: string, where: string, problems: string[] = []): Obj[] {
  const out: Obj[] = [];
  for (const d of parseAllDocuments(text)) {
    for (const e of d.errors) problems.push(`${where}: YAML: ${e.message}`);
    const v = d.toJS() as unknown;
    if (isObj(v)) out.push(v);
  }
  return out;
}

export interface DockerfileExpectations {
  readonly variant: 'cpu' | 'cuda';
  /** Build context, to check that every COPY source exists. */
  readonly context: string;
}

/**
 * dockerfile-utils' linter (the diagnostics VS Code's Docker extension shows: unknown
 * instructions and flags, bad JSON arrays, duplicate CMD/ENTRYPOINT/HEALTHCHECK, relative WORKDIR,
 * ...) plus this project's rules on the final stage: a non-root USER, a HEALTHCHECK on /health,
 * an exec-form ENTRYPOINT through tini and docker/entrypoint.sh, pinned base images, COPY sources
 * that exist; for CUDA, a CUDA 12 base and the provider libraries fetched and checked.
 */
export function checkDockerfile(text: string, x: DockerfileExpectations): string[] {
  const problems: string[] = [];
  for (const d of lintDockerfile(text, {
    instructionWorkdirRelative: 1,
    instructionCmdMultiple: 1,
    instructionEntrypointMultiple: 1,
    instructionHealthcheckMultiple: 1,
    instructionJSONInSingleQuotes: 1,
  })) {
    problems.push(`line ${d.range.start.line + 1}: ${d.message}`);
  }
  const file = DockerfileParser.parse(text);
  const froms = file.getFROMs();
  const args = new Map(file.getInitialARGs().map((a) => [a.getProperty()?.getName(), a.getProperty()?.getValue()]));
  const stages = new Set(froms.map((f) => f.getBuildStage()).filter(Boolean));
  for (const f of froms) {
    let image = f.getImage() ?? '';
    const ref = /^\$\{?(\w+)\}?$/.exec(image);
    if (ref) image = args.get(ref[1]) ?? image;
    if (stages.has(image)) continue;
    const tag = image.includes('@') ? 'digest' : (image.split('/').pop()?.split(':')[1] ?? '');
    if (!tag || tag === 'latest') problems.push(`FROM ${image}: pin the base image's tag`);
  }
  // The final stage: instructions after the last FROM.
  const all = file.getInstructions();
  const lastFrom = froms.at(-1);
  const final = lastFrom ? all.filter((i) => i.getRange().start.line > lastFrom.getRange().start.line) : [];
  const kw = (k: string) => final.filter((i) => i.getKeyword() === k);
  const user = kw('USER').at(-1)?.getArgumentsContent()?.trim() ?? '';
  if (!user) problems.push('final stage has no USER: the image would run as root');
  else if (/^(root|0)(:|$)/.test(user)) problems.push(`final stage runs as root (USER ${user})`);
  const health = kw('HEALTHCHECK').at(-1)?.getArgumentsContent() ?? '';
  if (!health) problems.push('final stage has no HEALTHCHECK');
  else if (!health.includes('/health')) problems.push('HEALTHCHECK does not ask /health');
  const entry = kw('ENTRYPOINT').at(-1)?.getArgumentsContent()?.trim() ?? '';
  if (!entry.startsWith('[')) problems.push('ENTRYPOINT is not in exec form (signals would go to a shell)');
  if (!entry.includes('tini')) problems.push('ENTRYPOINT does not run tini as PID 1');
  if (!entry.includes('docker/entrypoint.sh')) problems.push('ENTRYPOINT does not run docker/entrypoint.sh');
  for (const c of all.filter((i) => i.getKeyword() === 'COPY')) {
    if ((c as unknown as { getFlags(): { getName(): string }[] }).getFlags().some((f) => f.getName() === 'from'))
      continue;
    const a = c.getArguments().map((x) => x.getValue());
    for (const src of a.filter((s) => !s.startsWith('--')).slice(0, -1)) {
      if (!existsSync(path.join(x.context, src))) problems.push(`COPY ${src}: not in the build context`);
    }
  }
  if (x.variant === 'cuda') {
    const base = (() => {
      const img = lastFrom?.getImage() ?? '';
      const ref = /^\$\{?(\w+)\}?$/.exec(img);
      return ref ? (args.get(ref[1]) ?? img) : img;
    })();
    if (!/^nvidia\/cuda:12\.[\d.]+-cudnn/.test(base))
      problems.push(`final base ${base} is not a CUDA 12 + cuDNN image`);
    if (!/ONNXRUNTIME_NODE_INSTALL=cuda12/.test(text)) problems.push('the CUDA provider libraries are never fetched');
    for (const lib of ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'])
      if (!text.includes(`napi-v6/linux/x64/${lib}`)) problems.push(`the build does not check that ${lib} arrived`);
  }
  return problems;
}

/** kubernetes-models' JSON-schema validate() on each object (test/support/k8s-schema-check.mjs). */
export function schemaCheck(docs: readonly Obj[]): string[] {
  const out = execFileSync(NODE, [path.join(ROOT, 'test/support/k8s-schema-check.mjs')], {
    cwd: ROOT,
    input: JSON.stringify(docs),
    encoding: 'utf8',
  });
  return (JSON.parse(out) as { kind: string; name: string; errors: string[] }[]).flatMap((r) =>
    r.errors.map((e) => `${r.kind}/${r.name}: ${e}`),
  );
}

export interface ManifestExpectations {
  /** A Deployment that must request nvidia.com/gpu (the CUDA variant). */
  readonly gpuDeployment: string;
}

/**
 * What the schemas cannot see: replicas ≥ 2 on a ReadWriteMany volume, /health probes on a
 * declared port, a GPU request in the CUDA variant, every ConfigMap/Secret/PVC a pod names is
 * defined (and each key of a Secret item or *_FILE path exists), the Secret holds the database URL,
 * the anchor key and TLS, and the Service selects the pods.
 */
export function checkManifests(docs: readonly Obj[], x: ManifestExpectations): string[] {
  const problems: string[] = [];
  const byKind = (k: string) => docs.filter((d) => d.kind === k);
  const name = (d: Obj) => String(obj(d.metadata).name ?? '');
  const secrets = new Map(byKind('Secret').map((s) => [name(s), { ...obj(s.data), ...obj(s.stringData) }]));
  const configMaps = new Map(byKind('ConfigMap').map((c) => [name(c), obj(c.data)]));
  const claims = new Map(byKind('PersistentVolumeClaim').map((p) => [name(p), p]));
  const deployments = byKind('Deployment');
  if (deployments.length === 0) problems.push('no Deployment');
  const allSecretKeys = [...secrets.values()].flatMap((s) => Object.keys(s));
  for (const k of ['database-url', 'audit-anchor.key', 'tls.crt', 'tls.key'])
    if (!allSecretKeys.includes(k)) problems.push(`no Secret holds ${k}`);
  for (const d of deployments) {
    const where = `Deployment/${name(d)}`;
    const spec = obj(d.spec);
    const tpl = obj(spec.template);
    const pod = obj(tpl.spec);
    const labels = obj(obj(tpl.metadata).labels);
    if (!(Number(spec.replicas) >= 2)) problems.push(`${where}: replicas ${String(spec.replicas)} < 2`);
    const volumes = new Map(arr(pod.volumes).map((v) => [String(obj(v).name), obj(v)]));
    for (const [vn, v] of volumes) {
      const cm = obj(v.configMap).name;
      if (cm !== undefined && !configMaps.has(String(cm))) problems.push(`${where}: volume ${vn}: no ConfigMap ${cm}`);
      const sec = obj(v.secret).secretName;
      if (sec !== undefined && !secrets.has(String(sec))) problems.push(`${where}: volume ${vn}: no Secret ${sec}`);
      const claim = obj(v.persistentVolumeClaim).claimName;
      if (claim !== undefined) {
        const pvc = claims.get(String(claim));
        if (!pvc) problems.push(`${where}: volume ${vn}: no PersistentVolumeClaim ${claim}`);
        else if (!arr(obj(pvc.spec).accessModes).includes('ReadWriteMany'))
          problems.push(`${where}: PVC ${claim} is not ReadWriteMany, but ${String(spec.replicas)} replicas share it`);
      }
    }
    const containers = arr(pod.containers).map(obj);
    const gpu = containers.some((c) => obj(obj(c.resources).limits)['nvidia.com/gpu'] !== undefined);
    if (name(d) === x.gpuDeployment && !gpu) problems.push(`${where}: no nvidia.com/gpu limit`);
    if (name(d) !== x.gpuDeployment && gpu) problems.push(`${where}: requests a GPU but is the CPU variant`);
    for (const c of containers) {
      const cw = `${where}/${String(c.name)}`;
      const ports = new Set(arr(c.ports).flatMap((p) => [obj(p).name, obj(p).containerPort]));
      for (const probe of ['livenessProbe', 'readinessProbe']) {
        const get = obj(obj(c[probe]).httpGet);
        if (get.path !== '/health') problems.push(`${cw}: ${probe} does not ask /health`);
        else if (!ports.has(get.port)) problems.push(`${cw}: ${probe} port ${String(get.port)} is not declared`);
      }
      const sc = obj(c.securityContext);
      const podSc = obj(pod.securityContext);
      if (sc.runAsNonRoot !== true && podSc.runAsNonRoot !== true) problems.push(`${cw}: runAsNonRoot not set`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${cw}: allowPrivilegeEscalation not false`);
      // *_FILE variables must name a key of a Secret mounted at their directory.
      const mounts = arr(c.volumeMounts).map(obj);
      for (const e of arr(c.env).map(obj)) {
        if (!String(e.name).endsWith('_FILE')) continue;
        const file = String(e.value ?? '');
        const m = mounts.find((mm) => file.startsWith(`${String(mm.mountPath)}/`));
        const vol = m && volumes.get(String(m.name));
        const sec = vol && secrets.get(String(obj(vol.secret).secretName));
        const key = m ? file.slice(String(m.mountPath).length + 1) : '';
        if (!sec || !(key in sec)) problems.push(`${cw}: ${String(e.name)}=${file} is no key of a mounted Secret`);
      }
      for (const m of mounts)
        if (!volumes.has(String(m.name))) problems.push(`${cw}: volumeMount ${String(m.name)} has no volume`);
    }
    const matched = byKind('Service').some((s) =>
      Object.entries(obj(obj(s.spec).selector)).every(([k, v]) => labels[k] === v),
    );
    if (!matched) problems.push(`${where}: no Service selects its pods`);
  }
  return problems;
}

const CONDITIONS = new Set(['service_started', 'service_healthy', 'service_completed_successfully']);

/**
 * compose.yaml's structure (the Compose Specification): postgres, orthanc and radscribe present;
 * each of them with a health check; every depends_on names a service with a valid condition, and
 * service_healthy only a service that has a health check; bind-mounted files and the Dockerfile
 * exist (except files the README says to create).
 */
export function checkCompose(doc: Obj, dir: string, mayBeAbsent: readonly string[] = []): string[] {
  const problems: string[] = [];
  const services = obj(doc.services);
  for (const s of ['postgres', 'orthanc', 'radscribe']) if (!(s in services)) problems.push(`no service ${s}`);
  for (const s of ['postgres', 'orthanc', 'radscribe'])
    if (s in services && !obj(services[s]).healthcheck) problems.push(`${s}: no healthcheck`);
  for (const [sn, sv] of Object.entries(services)) {
    const s = obj(sv);
    const dep = s.depends_on;
    const deps: [string, string][] = Array.isArray(dep)
      ? dep.map((d) => [String(d), 'service_started'])
      : Object.entries(obj(dep)).map(([k, v]) => [k, String(obj(v).condition ?? 'service_started')]);
    for (const [d, cond] of deps) {
      if (!(d in services)) problems.push(`${sn}: depends_on unknown service ${d}`);
      if (!CONDITIONS.has(cond)) problems.push(`${sn}: depends_on ${d}: unknown condition ${cond}`);
      if (cond === 'service_healthy' && !obj(services[d]).healthcheck)
        problems.push(`${sn}: waits for ${d} to be healthy, but ${d} has no healthcheck`);
      if (d === sn) problems.push(`${sn}: depends on itself`);
    }
    const hc = obj(s.healthcheck);
    if (s.healthcheck && !(Array.isArray(hc.test) && ['CMD', 'CMD-SHELL', 'NONE'].includes(String(hc.test[0]))))
      problems.push(`${sn}: healthcheck.test must be a list starting with CMD or CMD-SHELL`);
    const build = obj(s.build);
    if (s.build) {
      const ctx = path.resolve(dir, String(build.context ?? '.'));
      if (!existsSync(path.join(ctx, String(build.dockerfile ?? 'Dockerfile'))))
        problems.push(`${sn}: build.dockerfile ${String(build.dockerfile)} does not exist`);
    }
    for (const v of arr(s.volumes)) {
      const src = typeof v === 'string' ? v.split(':')[0] : String(obj(v).source ?? '');
      if (!src?.startsWith('.')) continue;
      if (mayBeAbsent.includes(src)) continue;
      if (!existsSync(path.resolve(dir, src))) problems.push(`${sn}: bind mount ${src} does not exist`);
    }
  }
  const named = new Set(Object.keys(obj(doc.volumes)));
  for (const [sn, sv] of Object.entries(services))
    for (const v of arr(obj(sv).volumes)) {
      const src = typeof v === 'string' ? (v.split(':')[0] ?? '') : '';
      if (src && !src.startsWith('.') && !src.startsWith('/') && !named.has(src))
        problems.push(`${sn}: volume ${src} is not declared under volumes`);
    }
  return problems;
}

/** The Kubernetes objects of deploy/k8s (kustomization.yaml is kustomize's, not the API's). */
export function k8sFiles(dir = path.join(ROOT, 'deploy/k8s')): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .map((f) => path.join(dir, f));
}

export function readK8s(files: readonly string[], problems: string[] = []): Obj[] {
  return files.flatMap((f) => yamlDocuments(readFileSync(f, 'utf8'), path.relative(ROOT, f), problems));
}
